package license

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/triadlm/triad/featver"
)

// Validate checks the rules every license body must meet, whether it is about
// to be signed or was just read from a file. The first problem found is
// returned, naming the field and what to change.
func (b *Body) Validate() error {
	if b.FormatVersion != FormatVersion {
		return fmt.Errorf("format_version is %d; this version of Triad writes and reads only %d", b.FormatVersion, FormatVersion)
	}
	if err := checkText("serial", b.Serial, 128); err != nil {
		return err
	}
	if err := checkText("issued_to", b.IssuedTo, 256); err != nil {
		return err
	}
	if b.Description != "" {
		if err := checkText("description", b.Description, 4096); err != nil {
			return err
		}
	}
	if b.IssuedAt.IsZero() {
		return errors.New("issued_at is not set: give the time the license is issued")
	}
	if b.ValidAfter.IsZero() {
		return errors.New("valid_after is not set: give the first day the license may be used")
	}
	if b.ValidUntil.IsZero() {
		return errors.New("valid_until is not set: give the last day the license may be used")
	}
	if !b.ValidUntil.After(b.ValidAfter) {
		return fmt.Errorf("valid_until (%s) is not after valid_after (%s): give a later valid_until or an earlier valid_after",
			fmtTime(b.ValidUntil), fmtTime(b.ValidAfter))
	}
	for i, s := range b.Supersedes {
		if err := checkText(fmt.Sprintf("supersedes[%d]", i), s, 128); err != nil {
			return err
		}
		if s == b.Serial {
			return fmt.Errorf("supersedes[%d] is the license's own serial %q: a license cannot supersede itself", i, s)
		}
	}
	if err := b.Binding.validate(); err != nil {
		return err
	}
	if err := validateFeatures(b.Features); err != nil {
		return err
	}
	return checkPackages(b.Features)
}

func (bd *Binding) validate() error {
	var want int
	switch bd.Mode {
	case ModeStandalone:
		want = 1
	case ModeFailover:
		want = 3
	default:
		return fmt.Errorf("binding.mode is %q: use %q (one member) or %q (three members)", bd.Mode, ModeStandalone, ModeFailover)
	}
	if len(bd.ComputerIDs) != want {
		return fmt.Errorf("binding.computer_ids has %d ids but a %s license needs exactly %d: give the computer id of every member",
			len(bd.ComputerIDs), bd.Mode, want)
	}
	seen := make(map[string]bool, len(bd.ComputerIDs))
	for i, id := range bd.ComputerIDs {
		if err := checkText(fmt.Sprintf("binding.computer_ids[%d]", i), id, 256); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("binding.computer_ids lists %q twice: the three members of a failover cluster need three different computer ids", id)
		}
		seen[id] = true
	}
	return nil
}

type featureKey struct {
	name    string
	version featver.Key
}

func validateFeatures(fs []Feature) error {
	if len(fs) == 0 {
		return errors.New("features is empty: a license must grant at least one feature")
	}
	seen := make(map[featureKey]int, len(fs))
	for i, f := range fs {
		if err := checkFeatureName(f.Name); err != nil {
			return fmt.Errorf("features[%d]: %w", i, err)
		}
		where := fmt.Sprintf("features[%d] (%s version %s)", i, f.Name, f.VersionString())
		if _, err := featver.Of(f.Version, f.VersionText); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if f.Count < 1 {
			return fmt.Errorf("%s: count is 0: give a count of at least 1", where)
		}
		switch f.Model {
		case "", ModelConcurrent, ModelNamedUser:
			if f.UsageHours != 0 {
				return fmt.Errorf("%s: usage_hours is only for the %q model", where, ModelCountdown)
			}
		case ModelCountdown:
			if f.UsageHours == 0 {
				return fmt.Errorf("%s: a %q feature needs usage_hours of at least 1", where, ModelCountdown)
			}
		default:
			return fmt.Errorf("%s: model is %q: use %q, %q or %q", where, f.Model, ModelConcurrent, ModelNamedUser, ModelCountdown)
		}
		switch f.Limit {
		case "", LimitHard:
			if f.Overdraft != 0 {
				return fmt.Errorf("%s: overdraft %d needs limit %q (a hard limit never overdraws)", where, f.Overdraft, LimitSoft)
			}
		case LimitSoft:
			if f.Overdraft == 0 {
				return fmt.Errorf("%s: a soft limit needs an overdraft of at least 1 seat", where)
			}
		default:
			return fmt.Errorf("%s: limit is %q: use %q or %q", where, f.Limit, LimitHard, LimitSoft)
		}
		if err := checkComponents(f); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		k := featureKey{f.Name, f.VersionKey()}
		if j, dup := seen[k]; dup {
			return fmt.Errorf("%s: same name and version as features[%d] (versions compare numerically: 2 == 2.0): merge them into one entry with the summed count", where, j)
		}
		seen[k] = i
	}
	return nil
}

// checkFeatureName enforces [A-Za-z0-9_.-]{1,64}: names travel in requests,
// logs and access-rule files, where spaces or punctuation would be ambiguous.
func checkFeatureName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("feature name %q must be 1 to 64 characters long", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-'
		if !ok {
			return fmt.Errorf("feature name %q may contain only letters, digits, '_', '.' and '-'", name)
		}
	}
	return nil
}

// checkText rejects empty, over-long, non-UTF-8 or control-character text.
// Such values end up in the file's comment lines and in error messages,
// where a newline would forge a line and bad UTF-8 would not survive JSON.
func checkText(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is empty: give a value", field)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long: shorten it to at most %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: use plain text", field)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s %q contains a control character (such as a newline or tab): use one line of plain text", field, s)
	}
	return nil
}

// MaxComponents bounds a package's component list.
const MaxComponents = 64

// checkComponents checks a package's component list: valid, distinct
// feature names other than the package's own, and only on a concurrent
// feature (a suite seat is held while leases are; named-user and
// countdown packages are not supported).
func checkComponents(f Feature) error {
	if len(f.Components) == 0 {
		return nil
	}
	if f.Model != "" && f.Model != ModelConcurrent {
		return fmt.Errorf("a package (components) must use the %q model, not %q", ModelConcurrent, f.Model)
	}
	if len(f.Components) > MaxComponents {
		return fmt.Errorf("%d components: a package may have at most %d", len(f.Components), MaxComponents)
	}
	seen := map[string]bool{}
	for _, c := range f.Components {
		if err := checkFeatureName(c); err != nil {
			return fmt.Errorf("component: %w", err)
		}
		if c == f.Name {
			return fmt.Errorf("component %q is the package itself", c)
		}
		if seen[c] {
			return fmt.Errorf("component %q is listed twice", c)
		}
		seen[c] = true
	}
	return nil
}

// checkPackages refuses a license where a name is both a package's
// component and a feature of its own in the same license, or a component
// of two packages: either would make a checkout of it ambiguous.
func checkPackages(fs []Feature) error {
	direct := map[string]bool{}
	for _, f := range fs {
		direct[f.Name] = true
	}
	comps := map[string][]string{}
	for _, f := range fs {
		if prev, ok := comps[f.Name]; ok && !slices.Equal(prev, f.Components) {
			return fmt.Errorf("the entries of %s list different components (%v and %v): every version of a package lists the same components", f.Name, prev, f.Components)
		}
		comps[f.Name] = f.Components
	}
	owner := map[string]string{}
	for _, f := range fs {
		for _, c := range f.Components {
			if direct[c] {
				return fmt.Errorf("feature %s is a component of package %s and also a feature of its own: license it one way", c, f.Name)
			}
			if o, ok := owner[c]; ok && o != f.Name {
				return fmt.Errorf("feature %s is a component of two packages, %s and %s: put it in one", c, o, f.Name)
			}
			owner[c] = f.Name
		}
	}
	return nil
}
