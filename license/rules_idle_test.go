package license

import (
	"strings"
	"testing"
)

func TestParseTimeoutLinger(t *testing.T) {
	r, err := ParseRules([]byte("timeout cad 30m\nLINGER cad 300 AS keep cad seats\nTIMEOUT cam 1h30m # long\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind, feature, name string
		ms                  int64
	}{
		{RuleTimeout, "cad", "TIMEOUT cad 30m (line 1)", 30 * 60 * 1000},
		{RuleLinger, "cad", "keep cad seats", 300 * 1000},
		{RuleTimeout, "cam", "TIMEOUT cam 1h30m0s (line 3)", 90 * 60 * 1000},
	}
	if len(r.Rules) != len(want) {
		t.Fatalf("got %d rules, want %d", len(r.Rules), len(want))
	}
	for i, w := range want {
		g := r.Rules[i]
		if g.Kind != w.kind || g.Feature != w.feature || g.Name != w.name || g.DurationMs != w.ms || g.Subject != "" {
			t.Errorf("rule %d = %v, want %+v", i, g, w)
		}
	}
	// Canonical text parses back to the same rules.
	text := string(RenderRules(r))
	if !strings.Contains(text, "TIMEOUT cad 30m\n") || !strings.Contains(text, "LINGER cad 5m AS keep cad seats\n") {
		t.Fatalf("rendered:\n%s", text)
	}
	again, err := ParseRules([]byte(text))
	if err != nil {
		t.Fatalf("rendered rules do not parse: %v\n%s", err, text)
	}
	for i := range r.Rules {
		if a, b := r.Rules[i], again.Rules[i]; a.Kind != b.Kind || a.Name != b.Name || a.DurationMs != b.DurationMs {
			t.Errorf("rule %d changed through RenderRules: %v -> %v", i, a, b)
		}
	}
}

func TestParseTimeoutLingerErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"TIMEOUT cad", "rules line 1: TIMEOUT needs a feature and a duration: TIMEOUT cad 30m"},
		{"LINGER", "LINGER needs a feature and a duration"},
		{"TIMEOUT cad soon", `TIMEOUT "soon" is not a duration such as 30m, 2h or 90s, nor a number of seconds`},
		{"TIMEOUT cad 0", `TIMEOUT "0" must be longer than 0`},
		{"LINGER cad 1.5s", `LINGER "1.5s" must be whole seconds`},
		{"LINGER cad 9000h", `LINGER "9000h" is longer than a year`},
		{"LINGER cad 99999999999", `is longer than a year`},
		{"TIMEOUT c@d 5m", `feature name "c@d"`},
		{"TIMEOUT cad 5m extra", `unexpected "extra" after the duration "5m"`},
		{"TIMEOUT cad 5m AS", "AS needs a rule name after it: TIMEOUT cad 5m AS my-rule"},
		{"TIMEOUT cad 5m\nTIMEOUT cad 10m", "rules line 2: line 1 already has a TIMEOUT rule for cad: keep one of them"},
		{"LINGER cad 5m AS x\nEXCLUDE cad USER bob AS x", `rule name "x" is already used on line 1`},
	}
	for _, tt := range tests {
		_, err := ParseRules([]byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRules(%q) = %v, want an error containing %q", tt.text, err, tt.want)
		}
	}
	// A TIMEOUT and a LINGER of the same feature may coexist.
	if _, err := ParseRules([]byte("TIMEOUT cad 5m\nLINGER cad 5m\n")); err != nil {
		t.Fatal(err)
	}
}

func TestFeatureSpecLingerMinTimeout(t *testing.T) {
	f, err := ParseFeatureSpec("cad:1:5,linger=5m,min_timeout=30m")
	if err != nil {
		t.Fatal(err)
	}
	if f.LingerSeconds != 300 || f.MinTimeoutSeconds != 1800 {
		t.Fatalf("got %+v", f)
	}
	if d := describeFeature(f); !strings.Contains(d, "linger 5m") || !strings.Contains(d, "idle timeout at least 30m") {
		t.Fatalf("describe: %s", d)
	}
	if _, err := ParseFeatureSpec("cad:1:5,linger=soon"); err == nil || !strings.Contains(err.Error(), "linger=soon must be a duration") {
		t.Fatalf("bad linger: %v", err)
	}
}
