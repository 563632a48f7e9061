package license

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

func rule(name, kind, feature, subject, value string, count uint32) *fsmpb.AccessRule {
	return &fsmpb.AccessRule{Name: name, Kind: kind, Feature: feature, Subject: subject, Value: value, Count: count}
}

func group(name, kind string, members ...string) *fsmpb.RuleGroup {
	return &fsmpb.RuleGroup{Name: name, Kind: kind, Members: members}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		groups []*fsmpb.RuleGroup
		rules  []*fsmpb.AccessRule
	}{
		{name: "empty", text: ""},
		{name: "comments and blanks", text: "# nothing yet\n\n   \t\n  # indented comment\r\n"},
		{
			name:   "group",
			text:   "GROUP designers alice bob",
			groups: []*fsmpb.RuleGroup{group("designers", GroupUser, "alice", "bob")},
		},
		{
			name:   "group accumulates without duplicates",
			text:   "GROUP designers alice bob\ngroup designers carol alice\nGroup designers bob dave bob",
			groups: []*fsmpb.RuleGroup{group("designers", GroupUser, "alice", "bob", "carol", "dave")},
		},
		{
			name:   "host group",
			text:   "HOST_GROUP lab ws01 ws02\nhost_group lab ws03",
			groups: []*fsmpb.RuleGroup{group("lab", GroupHost, "ws01", "ws02", "ws03")},
		},
		{
			name: "groups sorted by name, names case-sensitive",
			text: "GROUP b u1\nHOST_GROUP a h1\nGROUP B u2\nGROUP c u3",
			groups: []*fsmpb.RuleGroup{
				group("B", GroupUser, "u2"), group("a", GroupHost, "h1"),
				group("b", GroupUser, "u1"), group("c", GroupUser, "u3"),
			},
		},
		{
			name:  "include user",
			text:  "INCLUDE cad USER alice",
			rules: []*fsmpb.AccessRule{rule("INCLUDE cad USER alice (line 1)", RuleInclude, "cad", SubjectUser, "alice", 0)},
		},
		{
			name:  "exclude host, keywords in any case",
			text:  "\n\n# kiosks are public\nexclude cad host kiosk",
			rules: []*fsmpb.AccessRule{rule("EXCLUDE cad HOST kiosk (line 4)", RuleExclude, "cad", SubjectHost, "kiosk", 0)},
		},
		{
			name:   "include group",
			text:   "GROUP designers alice\nInclude cad.render Group designers",
			groups: []*fsmpb.RuleGroup{group("designers", GroupUser, "alice")},
			rules:  []*fsmpb.AccessRule{rule("INCLUDE cad.render GROUP designers (line 2)", RuleInclude, "cad.render", SubjectGroup, "designers", 0)},
		},
		{
			name:   "exclude host group defined later",
			text:   "EXCLUDE cad HOST_GROUP lab\nHOST_GROUP lab ws01",
			groups: []*fsmpb.RuleGroup{group("lab", GroupHost, "ws01")},
			rules:  []*fsmpb.AccessRule{rule("EXCLUDE cad HOST_GROUP lab (line 1)", RuleExclude, "cad", SubjectHostGroup, "lab", 0)},
		},
		{
			name:  "reserve",
			text:  "RESERVE 2 cad USER alice",
			rules: []*fsmpb.AccessRule{rule("RESERVE 2 cad USER alice (line 1)", RuleReserve, "cad", SubjectUser, "alice", 2)},
		},
		{
			name:  "reserve for a host, count with leading zero",
			text:  "reserve 007 cad host ws01",
			rules: []*fsmpb.AccessRule{rule("RESERVE 7 cad HOST ws01 (line 1)", RuleReserve, "cad", SubjectHost, "ws01", 7)},
		},
		{
			name:   "reserve for a group",
			text:   "GROUP g a\nRESERVE 3 cad GROUP g",
			groups: []*fsmpb.RuleGroup{group("g", GroupUser, "a")},
			rules:  []*fsmpb.AccessRule{rule("RESERVE 3 cad GROUP g (line 2)", RuleReserve, "cad", SubjectGroup, "g", 3)},
		},
		{
			name:  "max",
			text:  "MAX 2 cad USER bob",
			rules: []*fsmpb.AccessRule{rule("MAX 2 cad USER bob (line 1)", RuleMax, "cad", SubjectUser, "bob", 2)},
		},
		{
			name:   "max for a host group, largest count",
			text:   "HOST_GROUP lab ws01\nMAX 4294967295 cad HOST_GROUP lab",
			groups: []*fsmpb.RuleGroup{group("lab", GroupHost, "ws01")},
			rules:  []*fsmpb.AccessRule{rule("MAX 4294967295 cad HOST_GROUP lab (line 2)", RuleMax, "cad", SubjectHostGroup, "lab", 4294967295)},
		},
		{
			name: "AS names a rule, may hold spaces, any case of AS",
			text: "EXCLUDE cad HOST kiosk AS no-kiosks\nMAX 1 cad USER bob as   bob's   one seat  # trailing comment",
			rules: []*fsmpb.AccessRule{
				rule("no-kiosks", RuleExclude, "cad", SubjectHost, "kiosk", 0),
				rule("bob's one seat", RuleMax, "cad", SubjectUser, "bob", 1),
			},
		},
		{
			name: "rules in file order, values case-sensitive, CRLF and BOM",
			text: "\uFEFFMAX 1 cad USER Bob\r\nMAX 1 cad USER bob\r\nINCLUDE cad USER bob#2\r\n",
			rules: []*fsmpb.AccessRule{
				rule("MAX 1 cad USER Bob (line 1)", RuleMax, "cad", SubjectUser, "Bob", 1),
				rule("MAX 1 cad USER bob (line 2)", RuleMax, "cad", SubjectUser, "bob", 1),
				rule("INCLUDE cad USER bob#2 (line 3)", RuleInclude, "cad", SubjectUser, "bob#2", 0),
			},
		},
		{
			name: "same subject in different kinds and features",
			text: "INCLUDE cad USER bob\nEXCLUDE cad USER bob\nINCLUDE cam USER bob\nMAX 1 cad USER bob\nRESERVE 1 cad USER bob",
			rules: []*fsmpb.AccessRule{
				rule("INCLUDE cad USER bob (line 1)", RuleInclude, "cad", SubjectUser, "bob", 0),
				rule("EXCLUDE cad USER bob (line 2)", RuleExclude, "cad", SubjectUser, "bob", 0),
				rule("INCLUDE cam USER bob (line 3)", RuleInclude, "cam", SubjectUser, "bob", 0),
				rule("MAX 1 cad USER bob (line 4)", RuleMax, "cad", SubjectUser, "bob", 1),
				rule("RESERVE 1 cad USER bob (line 5)", RuleReserve, "cad", SubjectUser, "bob", 1),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRules([]byte(tt.text))
			if err != nil {
				t.Fatalf("ParseRules: %v", err)
			}
			want := &fsmpb.AccessRules{Text: tt.text, Groups: tt.groups, Rules: tt.rules}
			if !proto.Equal(got, want) {
				t.Fatalf("ParseRules(%q)\n got %v\nwant %v", tt.text, got, want)
			}
			// Deterministic: the same input gives the same bytes.
			again, _ := ParseRules([]byte(tt.text))
			b1, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			b2, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again)
			if !bytes.Equal(b1, b2) {
				t.Fatal("two parses of one text encode differently")
			}
			checkRenderRoundTrip(t, got)
		})
	}
}

func TestParseRulesErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"unknown keyword", "# ok\nALLOW cad USER bob", []string{"rules line 2", `unknown keyword "ALLOW"`, "GROUP, HOST_GROUP, INCLUDE, EXCLUDE, RESERVE, MAX, TIMEOUT or LINGER"}},
		{"group without members", "GROUP designers", []string{"rules line 1", "GROUP needs a group name and at least one user"}},
		{"host group without members", "\nHOST_GROUP lab # none", []string{"rules line 2", "HOST_GROUP needs a group name and at least one host"}},
		{"bad group name", "GROUP de/signers alice", []string{"rules line 1", `group name "de/signers"`}},
		{"group name used for both kinds", "GROUP lab alice\nHOST_GROUP lab ws01", []string{"rules line 2", `"lab" is already a GROUP (line 1)`}},
		{"host group name used for a user group", "HOST_GROUP lab ws01\nGROUP lab alice", []string{"rules line 2", `"lab" is already a HOST_GROUP (line 1)`}},
		{"include too short", "INCLUDE cad USER", []string{"rules line 1", "INCLUDE needs a feature, a subject type and a value: INCLUDE cad GROUP designers"}},
		{"exclude too short", "EXCLUDE", []string{"rules line 1", "EXCLUDE needs a feature, a subject type and a value"}},
		{"reserve too short", "RESERVE 2 cad USER", []string{"RESERVE needs a count, a feature, a subject type and a value: RESERVE 2 cad USER alice"}},
		{"max without anything", "MAX", []string{"rules line 1: MAX needs a count, a feature, a subject type and a value: MAX 2 cad USER bob"}},
		{"max without count", "\n\n\n\n\n\nMAX cad USER bob", []string{"rules line 7", `count "cad" is not a whole number`, "MAX 2 cad USER bob"}},
		{"max count 0", "MAX 0 cad USER bob", []string{`count "0" is not a whole number from 1`}},
		{"reserve count negative", "RESERVE -1 cad USER bob", []string{`count "-1"`}},
		{"reserve count too big", "RESERVE 4294967296 cad USER bob", []string{`count "4294967296"`}},
		{"reserve count not a number", "RESERVE two cad USER bob", []string{`count "two"`, "RESERVE 2 cad USER alice"}},
		{"bad feature name", "EXCLUDE c@d USER bob", []string{"rules line 1", `feature name "c@d" may contain only`}},
		{"long feature name", "EXCLUDE " + strings.Repeat("f", 65) + " USER bob", []string{"must be 1 to 64 characters"}},
		{"bad subject", "EXCLUDE cad PERSON bob", []string{`subject type "PERSON" is not USER, HOST, GROUP or HOST_GROUP`, "EXCLUDE cad HOST kiosk"}},
		{"two values", "EXCLUDE cad USER bob carol", []string{`unexpected "carol" after the value "bob"`, "AS NAME"}},
		{"AS without name", "EXCLUDE cad USER bob AS", []string{"AS needs a rule name", "EXCLUDE cad USER bob AS my-rule"}},
		{"AS name is a comment", "EXCLUDE cad USER bob AS #x", []string{"AS needs a rule name"}},
		{"bad group name in a rule", "EXCLUDE cad GROUP de/x", []string{"rules line 1", `group name "de/x"`}},
		{"group not defined", "INCLUDE cad GROUP designers", []string{"rules line 1", `GROUP "designers" is not defined`, `GROUP designers alice bob`}},
		{"host group not defined", "GROUP x a\n\nMAX 1 cad HOST_GROUP lab", []string{"rules line 3", `HOST_GROUP "lab" is not defined`, "HOST_GROUP lab ws01 ws02"}},
		{"GROUP names a host group", "HOST_GROUP lab ws01\nEXCLUDE cad GROUP lab", []string{"rules line 2", `"lab" is a HOST_GROUP, not a GROUP: write HOST_GROUP lab`}},
		{"HOST_GROUP names a user group", "GROUP d a\nEXCLUDE cad HOST_GROUP d", []string{"rules line 2", `"d" is a GROUP, not a HOST_GROUP: write GROUP d`}},
		{"duplicate explicit names", "EXCLUDE cad USER a AS r\nEXCLUDE cad USER b AS r", []string{"rules line 2", `rule name "r" is already used on line 1`}},
		{"explicit name equal to a default name", "EXCLUDE cad USER a\nEXCLUDE cad USER b AS EXCLUDE cad USER a (line 1)", []string{"rules line 2", "already used on line 1"}},
		{"repeated statement", "MAX 1 cad USER a\nmax 01 cad user a AS other", []string{"rules line 2: line 1 already has a MAX rule for cad USER a: keep one"}},
		{"conflicting caps", "\nRESERVE 1 cad GROUP g AS x\nRESERVE 2 cad GROUP g AS y\nGROUP g a", []string{"rules line 3: line 2 already has a RESERVE rule for cad GROUP g"}},
		{"invalid UTF-8", "EXCLUDE cad USER \xff", []string{"rules line 1 is not valid UTF-8"}},
		{"invalid UTF-8 in a comment", "# caf\xe9\n", []string{"rules line 1 is not valid UTF-8"}},
		{"control character", "EXCLUDE cad USER b\x00b", []string{"control character"}},
		{"long value", "EXCLUDE cad USER " + strings.Repeat("u", 257), []string{"at most 256"}},
		{"long rule name", "EXCLUDE cad USER u AS " + strings.Repeat("n ", 130), []string{"rule name is 259 bytes long"}},
		{"too many lines", strings.Repeat("# x\n", MaxRulesLines+1), []string{"10001 lines", "limit is 10000"}},
		{"too large", "#" + strings.Repeat("x", MaxRulesBytes), []string{"1048577 bytes", "1 MiB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRules([]byte(tt.text))
			if err == nil {
				t.Fatalf("ParseRules(%.60q) = %v, want an error", tt.text, got)
			}
			if got != nil {
				t.Errorf("ParseRules returned rules with an error")
			}
			if !errors.Is(err, ErrRules) {
				t.Errorf("error %q does not wrap ErrRules", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseRulesLimitsAreInclusive(t *testing.T) {
	text := strings.Repeat("# x\n", MaxRulesLines)
	if _, err := ParseRules([]byte(text)); err != nil {
		t.Errorf("%d lines: %v", MaxRulesLines, err)
	}
	text = "#" + strings.Repeat("x", MaxRulesBytes-1)
	if _, err := ParseRules([]byte(text)); err != nil {
		t.Errorf("%d bytes: %v", MaxRulesBytes, err)
	}
}

func TestRenderRules(t *testing.T) {
	text := "# rules\nexclude cad host kiosk\nGROUP d alice bob\nHOST_GROUP lab ws01\nmax 2 cad group d as cap\nINCLUDE cad USER bob\n"
	r, err := ParseRules([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	// The rules move to lines 3-5, so the first and last keep their old names
	// with AS, while "cap" keeps its explicit name.
	want := "GROUP d alice bob\n" +
		"HOST_GROUP lab ws01\n" +
		"EXCLUDE cad HOST kiosk AS EXCLUDE cad HOST kiosk (line 2)\n" +
		"MAX 2 cad GROUP d AS cap\n" +
		"INCLUDE cad USER bob AS INCLUDE cad USER bob (line 6)\n"
	if got := string(RenderRules(r)); got != want {
		t.Errorf("RenderRules =\n%s\nwant\n%s", got, want)
	}
	checkRenderRoundTrip(t, r)

	// Canonical text renders to itself: default names match their lines.
	canon := "GROUP d alice\nEXCLUDE cad GROUP d\nRESERVE 1 cad USER bob AS keep\n"
	r, err = ParseRules([]byte(canon))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(RenderRules(r)); got != canon {
		t.Errorf("RenderRules of canonical text =\n%s\nwant it unchanged", got)
	}
	if got := RenderRules(&fsmpb.AccessRules{}); len(got) != 0 {
		t.Errorf("RenderRules of no rules = %q, want empty", got)
	}
}

// checkRenderRoundTrip: the rendered text parses to the same groups and
// rules, and rendering is idempotent.
func checkRenderRoundTrip(t *testing.T, r *fsmpb.AccessRules) {
	t.Helper()
	text := RenderRules(r)
	back, err := ParseRules(text)
	if err != nil {
		t.Fatalf("rendered rules do not parse: %v\n%s", err, text)
	}
	want := proto.Clone(r).(*fsmpb.AccessRules)
	want.Text = string(text)
	if !proto.Equal(back, want) {
		t.Fatalf("rendered rules parse differently:\n%s\n got %v\nwant %v", text, back, want)
	}
	if again := RenderRules(back); !bytes.Equal(again, text) {
		t.Fatalf("rendering is not idempotent:\n%s\n---\n%s", text, again)
	}
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		"",
		"# comment\n\nGROUP designers alice bob\ngroup designers carol\nHOST_GROUP lab ws01 ws02\n",
		"INCLUDE cad GROUP designers\nGROUP designers alice\nEXCLUDE cad HOST kiosk AS no kiosks # why\n",
		"RESERVE 2 cad USER alice\nMAX 1 cad HOST_GROUP lab\nHOST_GROUP lab ws01\n",
		"MAX 2 cad USER bob AS EXCLUDE x USER y (line 1)\nEXCLUDE x USER y\n",
		"\uFEFFexclude cad user bob\r\n",
		"MAX 0 cad USER bob",
		"EXCLUDE cad GROUP nobody",
		"EXCLUDE cad USER a AS r\nEXCLUDE cad USER b AS r",
		"INCLUDE c\u00a0d USER a\u2028b",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			if r != nil {
				t.Fatal("ParseRules returned rules with an error")
			}
			if !errors.Is(err, ErrRules) || !strings.HasPrefix(err.Error(), "rules line ") && !strings.HasPrefix(err.Error(), "access rules file ") {
				t.Fatalf("error %q does not wrap ErrRules or name the line", err)
			}
			return
		}
		if r.Text != string(data) {
			t.Fatal("Text is not the input")
		}
		// The replicated state must encode: proto strings need valid UTF-8.
		if _, err := proto.Marshal(r); err != nil {
			t.Fatalf("parsed rules do not encode: %v", err)
		}
		names := map[string]bool{}
		for _, rule := range r.Rules {
			if names[rule.Name] {
				t.Fatalf("duplicate rule name %q", rule.Name)
			}
			names[rule.Name] = true
			if (rule.Kind == RuleReserve || rule.Kind == RuleMax) != (rule.Count > 0) {
				t.Fatalf("rule %q of kind %s has count %d", rule.Name, rule.Kind, rule.Count)
			}
		}
		for i := 1; i < len(r.Groups); i++ {
			if r.Groups[i-1].Name >= r.Groups[i].Name {
				t.Fatalf("groups not sorted: %q before %q", r.Groups[i-1].Name, r.Groups[i].Name)
			}
		}
		checkRenderRoundTrip(t, r)
	})
}

// ExampleParseRules shows the replicated form of a small file.
func ExampleParseRules() {
	r, err := ParseRules([]byte(`# CAD seats
GROUP designers alice bob
EXCLUDE cad HOST kiosk
RESERVE 2 cad GROUP designers AS designers-first
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, g := range r.Groups {
		fmt.Println(g.Kind, g.Name, g.Members)
	}
	for _, x := range r.Rules {
		fmt.Printf("%s: %s %s %s=%s %d\n", x.Name, x.Kind, x.Feature, x.Subject, x.Value, x.Count)
	}
	// Output:
	// user designers [alice bob]
	// EXCLUDE cad HOST kiosk (line 3): exclude cad host=kiosk 0
	// designers-first: reserve cad group=designers 2
}
