package license

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/triadlm/triad/featver"
)

// ParseFeatureSpec reads a command-line feature:
//
//	NAME:VERSION:COUNT[,model=concurrent|named-user|countdown][,limit=hard|soft]
//	    [,overdraft=N][,grace=DURATION][,borrow=DURATION][,hours=N]
//	    [,linger=DURATION][,min_timeout=DURATION]
//
// for example "cad:5:10" or "sim:2:5,model=countdown,hours=500,borrow=72h".
// Without options the feature is concurrent with a hard limit, the default
// grace and no borrowing. hours=N implies model=countdown and overdraft=N
// implies limit=soft when model or limit is not given. Durations are Go
// durations in whole seconds (2h, 30m, 90s); grace is at least 1s, borrow=0
// means no borrowing. The result passes the body's feature checks.
func ParseFeatureSpec(spec string) (Feature, error) {
	head, opts, hasOpts := strings.Cut(strings.TrimSpace(spec), ",")
	parts := strings.Split(head, ":")
	if len(parts) != 3 {
		return Feature{}, fmt.Errorf("feature %q must be name:version:count, for example cad:5:10, optionally followed by ,model=...,limit=...,overdraft=N,grace=2h,borrow=72h,hours=N,linger=5m,min_timeout=30m", spec)
	}
	name := strings.TrimSpace(parts[0])
	if err := checkFeatureName(name); err != nil {
		return Feature{}, fmt.Errorf("feature %q: %w", spec, err)
	}
	version, text, err := featver.Split(strings.TrimSpace(parts[1]))
	if err != nil {
		return Feature{}, fmt.Errorf("feature %q: %w", spec, err)
	}
	count, err := strconv.ParseUint(strings.TrimSpace(parts[2]), 10, 32)
	if err != nil || count < 1 {
		return Feature{}, fmt.Errorf("feature %q: count %q must be a whole number from 1 to 4294967295", spec, parts[2])
	}
	f := Feature{Name: name, Version: version, VersionText: text, Count: uint32(count)}
	if hasOpts {
		if err := f.setOptions(opts); err != nil {
			return Feature{}, fmt.Errorf("feature %q: %w", spec, err)
		}
	}
	if f.Model == "" {
		f.Model = ModelConcurrent
		if f.UsageHours > 0 {
			f.Model = ModelCountdown
		}
	}
	if f.Limit == "" {
		f.Limit = LimitHard
		if f.Overdraft > 0 {
			f.Limit = LimitSoft
		}
	}
	switch {
	case f.Model == ModelCountdown && f.UsageHours == 0:
		return Feature{}, fmt.Errorf("feature %q: model=countdown needs hours=N, the pool of usage hours", spec)
	case f.Model != ModelCountdown && f.UsageHours > 0:
		return Feature{}, fmt.Errorf("feature %q: hours=%d is only for model=countdown", spec, f.UsageHours)
	case f.Limit == LimitSoft && f.Overdraft == 0:
		return Feature{}, fmt.Errorf("feature %q: limit=soft needs overdraft=N, the seats granted beyond the count", spec)
	case f.Limit == LimitHard && f.Overdraft > 0:
		return Feature{}, fmt.Errorf("feature %q: overdraft=%d needs limit=soft (a hard limit never overdraws)", spec, f.Overdraft)
	}
	return f, nil
}

// ParseFeatureSpecs reads one or more comma-separated feature specs, as
// older versions of `triadctl vendor issue --feature a:1:5,b:2:3` accepted:
// a comma-separated part with a ':' starts the next feature, any other part
// is an option of the feature before it.
func ParseFeatureSpecs(s string) ([]Feature, error) {
	var specs []string
	for _, part := range strings.Split(s, ",") {
		if len(specs) == 0 || strings.Contains(part, ":") {
			specs = append(specs, part)
		} else {
			specs[len(specs)-1] += "," + part
		}
	}
	out := make([]Feature, 0, len(specs))
	for _, spec := range specs {
		f, err := ParseFeatureSpec(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// featureOptions are the keys ParseFeatureSpec accepts after the count.
const featureOptions = "model, limit, overdraft, grace, borrow, hours, components, linger, min_timeout"

func (f *Feature) setOptions(opts string) error {
	seen := map[string]bool{}
	for _, opt := range strings.Split(opts, ",") {
		key, val, ok := strings.Cut(opt, "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok || key == "" || val == "" {
			return fmt.Errorf("option %q must be KEY=VALUE with KEY one of %s", strings.TrimSpace(opt), featureOptions)
		}
		if seen[key] {
			return fmt.Errorf("option %s is given twice: keep one", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "model":
			switch val {
			case ModelConcurrent, ModelNamedUser, ModelCountdown:
				f.Model = val
			default:
				return fmt.Errorf("model=%s: use model=%s, model=%s or model=%s", val, ModelConcurrent, ModelNamedUser, ModelCountdown)
			}
		case "limit":
			switch val {
			case LimitHard, LimitSoft:
				f.Limit = val
			default:
				return fmt.Errorf("limit=%s: use limit=%s or limit=%s", val, LimitHard, LimitSoft)
			}
		case "overdraft":
			f.Overdraft, err = optionCount(key, val)
		case "hours":
			f.UsageHours, err = optionCount(key, val)
		case "grace":
			f.GraceSeconds, err = optionSeconds(key, val, 1)
		case "borrow":
			f.MaxBorrowSeconds, err = optionSeconds(key, val, 0)
		case "components":
			// '+' separates them: ',' separates options and ':' features.
			for _, c := range strings.Split(val, "+") {
				f.Components = append(f.Components, strings.TrimSpace(c))
			}
			if err := checkComponents(*f); err != nil {
				return fmt.Errorf("components=%s: %w", val, err)
			}
		case "linger":
			f.LingerSeconds, err = optionSeconds(key, val, 0)
		case "min_timeout":
			f.MinTimeoutSeconds, err = optionSeconds(key, val, 0)
		default:
			return fmt.Errorf("unknown option %q: use %s", key, featureOptions)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func optionCount(key, val string) (uint32, error) {
	n, err := strconv.ParseUint(val, 10, 32)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%s must be a whole number from 1 to 4294967295", key, val)
	}
	return uint32(n), nil
}

// optionSeconds reads a duration such as 2h or 30m as whole seconds.
func optionSeconds(key, val string, min uint32) (uint32, error) {
	d, err := time.ParseDuration(val)
	const maxSeconds = 1<<32 - 1
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s=%s must be a duration such as 2h, 30m or 90s", key, val)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%s=%s must be whole seconds", key, val)
	case d < time.Duration(min)*time.Second:
		return 0, fmt.Errorf("%s=%s must be at least %ds", key, val, min)
	case d/time.Second > maxSeconds:
		return 0, fmt.Errorf("%s=%s is too long: at most %d seconds (about 136 years)", key, val, uint64(maxSeconds))
	}
	return uint32(d / time.Second), nil
}

// IssueSpec is the JSON file `triadctl vendor issue --spec` reads: the body
// fields a vendor chooses. Dates are strings as on the command line
// (YYYY-MM-DD or RFC 3339); features use the body's JSON field names.
// Unknown keys are refused, so a misspelt field is never silently dropped.
type IssueSpec struct {
	Serial      string    `json:"serial"`
	IssuedTo    string    `json:"issued_to"`
	ValidAfter  string    `json:"valid_after"`
	ValidUntil  string    `json:"valid_until"`
	Supersedes  []string  `json:"supersedes"`
	Binding     Binding   `json:"binding"`
	Features    []Feature `json:"features"`
	Description string    `json:"description"`
}

// specFields lists what an IssueSpec may hold, for error messages.
const specFields = "serial, issued_to, valid_after, valid_until, supersedes, binding {mode, computer_ids}, " +
	"features [{name, version, count, model, limit, overdraft, grace_seconds, max_borrow_seconds, usage_hours, version_text, components, linger_seconds, min_timeout_seconds}], description"

// ParseIssueSpec reads an issue spec. It checks only the JSON; Body checks
// the values.
func ParseIssueSpec(data []byte) (*IssueSpec, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("spec is %d bytes: the limit is 1 MiB", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s IssueSpec
	err := dec.Decode(&s)
	if err == nil {
		if _, e := dec.Token(); e != io.EOF {
			err = errors.New("extra data after the JSON object")
		}
	}
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch msg := err.Error(); {
		case strings.HasPrefix(msg, "json: unknown field "):
			return nil, fmt.Errorf("spec has %s: the spec may hold %s", strings.TrimPrefix(msg, "json: "), specFields)
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return nil, fmt.Errorf("spec must be a JSON object {...}, not %s", typeErr.Value)
		case errors.As(err, &typeErr) && strings.HasSuffix(typeErr.Field, ".version"):
			return nil, fmt.Errorf("spec field %s must be a whole number from 0 to 4294967295, not %s; for a dotted version such as 2.1 give \"version_text\": \"2.1\" instead", typeErr.Field, typeErr.Value)
		case errors.As(err, &typeErr):
			return nil, fmt.Errorf("spec field %s must be a JSON %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind()), typeErr.Value)
		case errors.As(err, &syntaxErr):
			return nil, fmt.Errorf("spec is not valid JSON at byte %d: %v", syntaxErr.Offset, err)
		default:
			return nil, fmt.Errorf("spec is not valid JSON: %v", err)
		}
	}
	return &s, nil
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "array"
	case reflect.Struct:
		return "object"
	default:
		return "whole number in range"
	}
}

// Body builds the license body from the spec, issued at now. valid_after
// defaults to now; a binding without a mode is standalone for one computer
// id and failover otherwise. The result is not yet validated (Sign does).
func (s *IssueSpec) Body(now time.Time) (Body, error) {
	b := Body{
		FormatVersion: FormatVersion,
		Serial:        s.Serial,
		IssuedTo:      s.IssuedTo,
		IssuedAt:      normTime(now),
		ValidAfter:    normTime(now),
		Supersedes:    s.Supersedes,
		Binding:       s.Binding,
		Features:      s.Features,
		Description:   s.Description,
	}
	b.Features = slices.Clone(s.Features)
	for i, f := range b.Features {
		// version_text alone gives the version: fill in its first component.
		if k, err := featver.Parse(f.VersionText); f.VersionText != "" && f.Version == 0 && err == nil {
			b.Features[i].Version = k.Major()
		}
	}
	if b.Binding.Mode == "" {
		b.Binding.Mode = ModeFailover
		if len(b.Binding.ComputerIDs) == 1 {
			b.Binding.Mode = ModeStandalone
		}
	}
	var err error
	if s.ValidAfter != "" {
		if b.ValidAfter, err = ParseStartDate(s.ValidAfter); err != nil {
			return Body{}, fmt.Errorf("valid_after: %w", err)
		}
	}
	if s.ValidUntil == "" {
		return Body{}, errors.New("valid_until is not set: give the last day the license may be used (YYYY-MM-DD)")
	}
	if b.ValidUntil, err = ParseDate(s.ValidUntil); err != nil {
		return Body{}, fmt.Errorf("valid_until: %w", err)
	}
	return b, nil
}

// ParseDate reads a command-line date for valid-until: "YYYY-MM-DD" means the
// END of that day in UTC (23:59:59), so "--valid-until 2027-01-01" includes
// the whole of New Year's Day. A full RFC 3339 time is used as given.
func ParseDate(s string) (time.Time, error) {
	day, exact, err := parseDay(s)
	if err != nil || exact {
		return day, err
	}
	return day.Add(24*time.Hour - time.Second), nil
}

// ParseStartDate is ParseDate for valid-after: "YYYY-MM-DD" means the START
// of that day in UTC (00:00:00).
func ParseStartDate(s string) (time.Time, error) {
	day, _, err := parseDay(s)
	return day, err
}

func parseDay(s string) (t time.Time, exact bool, err error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, false, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return normTime(t), true, nil
	}
	return time.Time{}, false, fmt.Errorf("date %q must be YYYY-MM-DD (or an RFC 3339 time such as 2027-01-01T12:00:00Z)", s)
}
