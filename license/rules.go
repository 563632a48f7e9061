package license

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/triadlm/triad/proto/fsmpb"
)

// ErrRules: an access-rules file that ParseRules refuses. The message names
// the line, what is wrong and what a correct statement looks like.
var ErrRules = errors.New("access rules are invalid")

// Limits on an access-rules file. They keep a replicated command small and a
// typo (a binary file given by mistake) from reaching the cluster.
const (
	MaxRulesBytes = 1 << 20
	MaxRulesLines = 10000
)

// Rule kinds (AccessRule.Kind).
const (
	RuleInclude = "include" // allow-list: with any INCLUDE, only included subjects may use the feature
	RuleExclude = "exclude" // deny
	RuleReserve = "reserve" // Count seats kept for the subject
	RuleMax     = "max"     // the subject holds at most Count seats
	RuleTimeout = "timeout" // release leases idle DurationMs (FlexNet TIMEOUT)
	RuleLinger  = "linger"  // released seats stay reserved DurationMs for their user and host
)

// MaxRuleDuration bounds TIMEOUT and LINGER durations (one year).
const MaxRuleDuration = 365 * 24 * time.Hour

// Rule subjects (AccessRule.Subject): what Value names.
const (
	SubjectUser      = "user"
	SubjectHost      = "host"
	SubjectGroup     = "group"      // a GROUP (of users) defined in the same file
	SubjectHostGroup = "host_group" // a HOST_GROUP defined in the same file
)

// Group kinds (RuleGroup.Kind).
const (
	GroupUser = "user" // defined by GROUP
	GroupHost = "host" // defined by HOST_GROUP
)

// maxRuleToken bounds a user, host, group or rule name; longer values are
// surely a mistake and would bloat every denial message.
const maxRuleToken = 256

// Statement keywords in canonical (upper) case.
var ruleKeyword = map[string]string{
	RuleInclude: "INCLUDE", RuleExclude: "EXCLUDE", RuleReserve: "RESERVE", RuleMax: "MAX",
	RuleTimeout: "TIMEOUT", RuleLinger: "LINGER",
	SubjectUser: "USER", SubjectHost: "HOST", SubjectGroup: "GROUP", SubjectHostGroup: "HOST_GROUP",
}

// ruleUsage is what each statement looks like, for error messages.
var ruleUsage = map[string]string{
	"GROUP":      "GROUP needs a group name and at least one user: GROUP designers alice bob",
	"HOST_GROUP": "HOST_GROUP needs a group name and at least one host: HOST_GROUP lab ws01 ws02",
	RuleInclude:  "INCLUDE needs a feature, a subject type and a value: INCLUDE cad GROUP designers",
	RuleExclude:  "EXCLUDE needs a feature, a subject type and a value: EXCLUDE cad HOST kiosk",
	RuleReserve:  "RESERVE needs a count, a feature, a subject type and a value: RESERVE 2 cad USER alice",
	RuleMax:      "MAX needs a count, a feature, a subject type and a value: MAX 2 cad USER bob",
	RuleTimeout:  "TIMEOUT needs a feature and a duration: TIMEOUT cad 30m (or seconds: TIMEOUT cad 1800)",
	RuleLinger:   "LINGER needs a feature and a duration: LINGER cad 5m (or seconds: LINGER cad 300)",
}

// ParseRules reads an access-rules file (options-file style; see
// docs/rules.md) into the replicated form. One statement per line:
//
//	GROUP NAME USER...
//	HOST_GROUP NAME HOST...
//	INCLUDE FEATURE SUBJECT VALUE [AS RULE-NAME]
//	EXCLUDE FEATURE SUBJECT VALUE [AS RULE-NAME]
//	RESERVE N FEATURE SUBJECT VALUE [AS RULE-NAME]
//	MAX N FEATURE SUBJECT VALUE [AS RULE-NAME]
//	TIMEOUT FEATURE DURATION [AS RULE-NAME]
//	LINGER FEATURE DURATION [AS RULE-NAME]
//
// SUBJECT is USER, HOST, GROUP or HOST_GROUP. Keywords are case-insensitive;
// names and values are not. A word starting with '#' starts a comment that
// runs to the end of the line. A rule without AS is named by its canonical
// statement and line, e.g. "EXCLUDE cad HOST kiosk (line 4)".
//
// The result is deterministic: groups sorted by name with members in file
// order (duplicates dropped), rules in file order, Text the input as given.
// Errors wrap ErrRules and name the first bad line.
func ParseRules(text []byte) (*fsmpb.AccessRules, error) {
	if len(text) > MaxRulesBytes {
		return nil, rulesErr("access rules file is %d bytes: the limit is 1 MiB (%d bytes); split rarely used rules out or use groups", len(text), MaxRulesBytes)
	}
	lines := strings.Split(string(text), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the final newline does not start a line
	}
	if len(lines) > MaxRulesLines {
		return nil, rulesErr("access rules file has %d lines: the limit is %d; use groups to shorten it", len(lines), MaxRulesLines)
	}
	p := &rulesParser{
		groups:    map[string]*groupDef{},
		names:     map[string]int{},
		statement: map[string]int{},
	}
	for i, line := range lines {
		if err := p.line(i+1, line); err != nil {
			return nil, err
		}
	}
	// Groups may be defined after the rules that use them, so references are
	// checked once the whole file is read.
	for i, r := range p.rules {
		want := map[string]string{SubjectGroup: GroupUser, SubjectHostGroup: GroupHost}[r.Subject]
		if want == "" {
			continue
		}
		g := p.groups[r.Value]
		switch {
		case g == nil:
			def := map[string]string{SubjectGroup: "GROUP " + r.Value + " alice bob", SubjectHostGroup: "HOST_GROUP " + r.Value + " ws01 ws02"}[r.Subject]
			return nil, rulesErr("rules line %d: %s %q is not defined in this file: add a line such as %q", p.ruleLine[i], ruleKeyword[r.Subject], r.Value, def)
		case g.kind != want:
			return nil, rulesErr("rules line %d: %q is a %s, not a %s: write %s %s", p.ruleLine[i], r.Value,
				groupKeyword(g.kind), ruleKeyword[r.Subject], groupKeyword(g.kind), r.Value)
		}
	}
	out := &fsmpb.AccessRules{Text: string(text), Rules: p.rules}
	names := make([]string, 0, len(p.groups))
	for name := range p.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := p.groups[name]
		out.Groups = append(out.Groups, &fsmpb.RuleGroup{Name: name, Kind: g.kind, Members: g.members})
	}
	return out, nil
}

type groupDef struct {
	kind    string
	line    int // first definition, for messages
	members []string
	has     map[string]bool
}

type rulesParser struct {
	groups    map[string]*groupDef
	rules     []*fsmpb.AccessRule
	ruleLine  []int          // line of each rule, for messages
	names     map[string]int // rule name -> line
	statement map[string]int // kind, feature and subject -> line, to refuse repeats
}

func rulesErr(format string, args ...any) error {
	return &kindError{kind: ErrRules, msg: fmt.Sprintf(format, args...)}
}

func (p *rulesParser) line(n int, line string) error {
	if !utf8.ValidString(line) {
		return rulesErr("rules line %d is not valid UTF-8: save the file as UTF-8 text", n)
	}
	if n == 1 {
		line = strings.TrimPrefix(line, "\uFEFF") // byte-order mark from some editors
	}
	words := strings.Fields(line)
	for i, w := range words {
		if strings.HasPrefix(w, "#") {
			words = words[:i]
			break
		}
	}
	if len(words) == 0 {
		return nil
	}
	for _, w := range words {
		if strings.IndexFunc(w, unicode.IsControl) >= 0 {
			return rulesErr("rules line %d: %q contains a control character: use plain text", n, w)
		}
		if len(w) > maxRuleToken {
			return rulesErr("rules line %d: %.20q... is %d bytes long: names and values may be at most %d", n, w, len(w), maxRuleToken)
		}
	}
	switch kw := strings.ToUpper(words[0]); kw {
	case "GROUP":
		return p.group(n, GroupUser, kw, words[1:])
	case "HOST_GROUP":
		return p.group(n, GroupHost, kw, words[1:])
	case "INCLUDE", "EXCLUDE", "RESERVE", "MAX":
		return p.rule(n, strings.ToLower(kw), words[1:])
	case "TIMEOUT", "LINGER":
		return p.durationRule(n, strings.ToLower(kw), words[1:])
	default:
		return rulesErr("rules line %d: unknown keyword %q: a statement starts with GROUP, HOST_GROUP, INCLUDE, EXCLUDE, RESERVE, MAX, TIMEOUT or LINGER (a '#' starts a comment)", n, words[0])
	}
}

func (p *rulesParser) group(n int, kind, kw string, args []string) error {
	if len(args) < 2 {
		return rulesErr("rules line %d: %s", n, ruleUsage[kw])
	}
	name := args[0]
	if err := checkGroupName(name); err != nil {
		return rulesErr("rules line %d: %v", n, err)
	}
	g := p.groups[name]
	if g == nil {
		g = &groupDef{kind: kind, line: n, has: map[string]bool{}}
		p.groups[name] = g
	} else if g.kind != kind {
		return rulesErr("rules line %d: %q is already a %s (line %d): give the %s another name", n, name, groupKeyword(g.kind), g.line, kw)
	}
	for _, m := range args[1:] {
		if !g.has[m] {
			g.has[m] = true
			g.members = append(g.members, m)
		}
	}
	return nil
}

func (p *rulesParser) rule(n int, kind string, args []string) error {
	usage := fmt.Sprintf("rules line %d: %s", n, ruleUsage[kind])
	r := &fsmpb.AccessRule{Kind: kind}
	if kind == RuleReserve || kind == RuleMax {
		if len(args) == 0 {
			return rulesErr("%s", usage)
		}
		c, err := strconv.ParseUint(args[0], 10, 32)
		if err != nil || c == 0 {
			return rulesErr("rules line %d: count %q is not a whole number from 1 to 4294967295; %s", n, args[0], ruleUsage[kind])
		}
		r.Count = uint32(c)
		args = args[1:]
	}
	if len(args) < 3 {
		return rulesErr("%s", usage)
	}
	r.Feature = args[0]
	if err := checkFeatureName(r.Feature); err != nil {
		return rulesErr("rules line %d: %v", n, err)
	}
	switch s := strings.ToUpper(args[1]); s {
	case "USER", "HOST", "GROUP", "HOST_GROUP":
		r.Subject = strings.ToLower(s)
	default:
		return rulesErr("rules line %d: subject type %q is not USER, HOST, GROUP or HOST_GROUP; %s", n, args[1], ruleUsage[kind])
	}
	r.Value = args[2]
	if r.Subject == SubjectGroup || r.Subject == SubjectHostGroup {
		if err := checkGroupName(r.Value); err != nil {
			return rulesErr("rules line %d: %v", n, err)
		}
	}
	stmt := canonicalStatement(r)
	switch rest := args[3:]; {
	case len(rest) == 0:
		r.Name = defaultRuleName(stmt, n)
	case !strings.EqualFold(rest[0], "AS"):
		return rulesErr("rules line %d: unexpected %q after the value %q: one value per rule; to name the rule write AS NAME at the end", n, rest[0], r.Value)
	case len(rest) == 1:
		return rulesErr("rules line %d: AS needs a rule name after it: %s AS my-rule", n, stmt)
	default:
		r.Name = strings.Join(rest[1:], " ")
		if len(r.Name) > maxRuleToken {
			return rulesErr("rules line %d: rule name is %d bytes long: shorten it to at most %d", n, len(r.Name), maxRuleToken)
		}
	}
	// One rule per kind, feature and subject: two caps or two reservations
	// for the same subject would leave the reader guessing which applies.
	target := r.Feature + " " + ruleKeyword[r.Subject] + " " + r.Value
	key := ruleKeyword[r.Kind] + " " + target
	if prev, dup := p.statement[key]; dup {
		return rulesErr("rules line %d: line %d already has a %s rule for %s: keep one of them", n, prev, ruleKeyword[r.Kind], target)
	}
	if prev, dup := p.names[r.Name]; dup {
		return rulesErr("rules line %d: rule name %q is already used on line %d: rule names must be unique (choose another after AS)", n, r.Name, prev)
	}
	p.statement[key] = n
	p.names[r.Name] = n
	p.rules = append(p.rules, r)
	p.ruleLine = append(p.ruleLine, n)
	return nil
}

// durationRule reads TIMEOUT FEATURE DURATION and LINGER FEATURE DURATION.
// DURATION is a Go duration in whole seconds (30m, 2h, 90s) or a number of
// seconds as in FlexNet's options file (1800).
func (p *rulesParser) durationRule(n int, kind string, args []string) error {
	if len(args) < 2 {
		return rulesErr("rules line %d: %s", n, ruleUsage[kind])
	}
	r := &fsmpb.AccessRule{Kind: kind, Feature: args[0]}
	if err := checkFeatureName(r.Feature); err != nil {
		return rulesErr("rules line %d: %v", n, err)
	}
	d, err := parseRuleDuration(args[1])
	if err != nil {
		return rulesErr("rules line %d: %s %q %v; %s", n, ruleKeyword[kind], args[1], err, ruleUsage[kind])
	}
	r.DurationMs = d.Milliseconds()
	stmt := canonicalStatement(r)
	switch rest := args[2:]; {
	case len(rest) == 0:
		r.Name = defaultRuleName(stmt, n)
	case !strings.EqualFold(rest[0], "AS"):
		return rulesErr("rules line %d: unexpected %q after the duration %q: to name the rule write AS NAME at the end", n, rest[0], args[1])
	case len(rest) == 1:
		return rulesErr("rules line %d: AS needs a rule name after it: %s AS my-rule", n, stmt)
	default:
		r.Name = strings.Join(rest[1:], " ")
		if len(r.Name) > maxRuleToken {
			return rulesErr("rules line %d: rule name is %d bytes long: shorten it to at most %d", n, len(r.Name), maxRuleToken)
		}
	}
	key := ruleKeyword[kind] + " " + r.Feature
	if prev, dup := p.statement[key]; dup {
		return rulesErr("rules line %d: line %d already has a %s rule for %s: keep one of them", n, prev, ruleKeyword[kind], r.Feature)
	}
	if prev, dup := p.names[r.Name]; dup {
		return rulesErr("rules line %d: rule name %q is already used on line %d: rule names must be unique (choose another after AS)", n, r.Name, prev)
	}
	p.statement[key] = n
	p.names[r.Name] = n
	p.rules = append(p.rules, r)
	p.ruleLine = append(p.ruleLine, n)
	return nil
}

// parseRuleDuration reads a TIMEOUT or LINGER duration.
func parseRuleDuration(s string) (time.Duration, error) {
	var d time.Duration
	if secs, err := strconv.ParseUint(s, 10, 64); err == nil {
		if secs > uint64(MaxRuleDuration/time.Second) {
			return 0, fmt.Errorf("is longer than a year (%d seconds)", uint64(MaxRuleDuration/time.Second))
		}
		d = time.Duration(secs) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("is not a duration such as 30m, 2h or 90s, nor a number of seconds")
	}
	switch {
	case d <= 0:
		return 0, errors.New("must be longer than 0")
	case d%time.Second != 0:
		return 0, errors.New("must be whole seconds")
	case d > MaxRuleDuration:
		return 0, errors.New("is longer than a year")
	}
	return d, nil
}

// FormatRuleDuration writes a TIMEOUT or LINGER duration as RenderRules
// does: whole hours, minutes or seconds ("2h", "30m", "90s", "1h30m").
func FormatRuleDuration(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0 && d < time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// checkGroupName allows what checkFeatureName allows, so a group name reads
// unambiguously in rules, logs and denial messages.
func checkGroupName(name string) error {
	if err := checkFeatureName(name); err != nil {
		return fmt.Errorf("group name %q must be 1 to 64 letters, digits, '_', '.' or '-'", name)
	}
	return nil
}

func groupKeyword(kind string) string {
	if kind == GroupHost {
		return "HOST_GROUP"
	}
	return "GROUP"
}

// canonicalStatement is the rule as RenderRules writes it, without a name.
func canonicalStatement(r *fsmpb.AccessRule) string {
	var b strings.Builder
	b.WriteString(ruleKeyword[r.Kind])
	if r.Kind == RuleTimeout || r.Kind == RuleLinger {
		b.WriteString(" " + r.Feature + " " + FormatRuleDuration(r.DurationMs))
		return b.String()
	}
	if r.Kind == RuleReserve || r.Kind == RuleMax {
		b.WriteString(" " + strconv.FormatUint(uint64(r.Count), 10))
	}
	b.WriteString(" " + r.Feature + " " + ruleKeyword[r.Subject] + " " + r.Value)
	return b.String()
}

func defaultRuleName(stmt string, line int) string {
	return fmt.Sprintf("%s (line %d)", stmt, line)
}

// RenderRules writes rules that ParseRules returned as canonical text: one
// line per group (user groups and host groups in name order), then one line
// per rule in order, keywords in upper case, single spaces, no comments.
// A rule keeps its name: "AS NAME" is written unless the name is the one
// ParseRules would give the rule at its line in the rendered text, so
// ParseRules(RenderRules(r)) has the same groups and rules as r.
func RenderRules(r *fsmpb.AccessRules) []byte {
	var buf bytes.Buffer
	line := 0
	groups := slices.Clone(r.GetGroups())
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].GetName() < groups[j].GetName() })
	for _, g := range groups {
		line++
		buf.WriteString(groupKeyword(g.GetKind()) + " " + g.GetName())
		for _, m := range g.GetMembers() {
			buf.WriteString(" " + m)
		}
		buf.WriteByte('\n')
	}
	for _, rule := range r.GetRules() {
		line++
		stmt := canonicalStatement(rule)
		buf.WriteString(stmt)
		if rule.GetName() != defaultRuleName(stmt, line) {
			buf.WriteString(" AS " + rule.GetName())
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}
