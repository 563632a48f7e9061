package featver

import (
	"strings"
	"testing"
)

func TestParseOrdersComponentByComponent(t *testing.T) {
	ordered := []string{"0", "1", "1.0.1", "2", "2.1", "2.9", "2.10", "2.10.3", "3", "5.3.1", "2024.06", "2024.7", "4294967295.65535.65535"}
	var prev Key
	for i, s := range ordered {
		k, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if i > 0 && k <= prev {
			t.Errorf("Parse(%q) = %#x, not above %q (%#x)", s, k, ordered[i-1], prev)
		}
		prev = k
	}
	for _, eq := range [][2]string{{"2", "2.0"}, {"2", "2.0.0"}, {"2024.06", "2024.6"}, {"2.1", "2.01.0"}} {
		a, _ := Parse(eq[0])
		b, _ := Parse(eq[1])
		if a != b {
			t.Errorf("%s and %s differ: %#x vs %#x", eq[0], eq[1], a, b)
		}
	}
	if k, _ := Parse("7"); k != Whole(7) || k.Major() != 7 {
		t.Errorf("Parse(7) = %#x, Whole(7) = %#x", k, Whole(7))
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "version is empty",
		"2..1":                  `minor component "" is not a whole number`,
		"2.":                    `minor component "" is not a whole number`,
		".1":                    `major component "" is not a whole number`,
		"v2":                    `major component "v2" is not a whole number`,
		"2.1-beta":              `minor component "1-beta"`,
		"-1":                    `"-1" is not a whole number`,
		" 2":                    "is not a whole number",
		"1.2.3.4":               "has 4 components",
		"2.65536":               "minor component 65536 is larger than 65535",
		"2.1.70000":             "patch component 70000 is larger than 65535",
		"4294967296":            "major component 4294967296 is larger than 4294967295",
		"99999999999999":        "larger than",
		strings.Repeat("1", 40): "longer than 32 characters",
	} {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestSplitOfDisplay(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    uint32
		text string
		show string
	}{{"5", 5, "", "5"}, {"2.1", 2, "2.1", "2.1"}, {"2024.06", 2024, "2024.06", "2024.06"}, {"5.3.1", 5, "5.3.1", "5.3.1"}, {"2.0", 2, "2.0", "2.0"}} {
		v, text, err := Split(c.in)
		if err != nil || v != c.v || text != c.text {
			t.Errorf("Split(%q) = %d, %q, %v; want %d, %q", c.in, v, text, err, c.v, c.text)
		}
		k, err := Of(v, text)
		want, _ := Parse(c.in)
		if err != nil || k != want {
			t.Errorf("Of(%d, %q) = %#x, %v; want %#x", v, text, k, err, want)
		}
		if got := Display(v, text); got != c.show {
			t.Errorf("Display(%d, %q) = %q, want %q", v, text, got, c.show)
		}
	}
	if _, err := Of(3, "2.1"); err == nil || !strings.Contains(err.Error(), "does not start with the version field's 3") {
		t.Errorf("Of(3, 2.1) = %v", err)
	}
	if _, err := Of(2, "2"); err == nil || !strings.Contains(err.Error(), "is a whole number") {
		t.Errorf("Of(2, \"2\") = %v", err)
	}
	if _, err := Of(2, "2.x"); err == nil {
		t.Error("Of(2, 2.x) accepted")
	}
	if got := Whole(2).String(); got != "2" {
		t.Errorf("Whole(2).String() = %q", got)
	}
	if k, _ := Parse("2024.06"); k.String() != "2024.6" {
		t.Errorf("2024.06 key string = %q", k.String())
	}
	if k, _ := Parse("5.0.1"); k.String() != "5.0.1" {
		t.Errorf("5.0.1 key string = %q", k.String())
	}
}
