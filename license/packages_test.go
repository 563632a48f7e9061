package license

import (
	"reflect"
	"strings"
	"testing"
)

func TestPackageDefinitions(t *testing.T) {
	_, priv := testKey(1)
	b := validBody()
	b.Features = []Feature{
		{Name: "suite", Version: 2, Count: 5, Components: []string{"cad", "cam"}},
		{Name: "suite", Version: 3, Count: 1, Components: []string{"cad", "cam"}},
		{Name: "viewer", Version: 1, Count: 9},
	}
	f := mustParse(t, mustSign(t, b, priv))
	if !reflect.DeepEqual(f.Body.Features[0].Components, []string{"cad", "cam"}) {
		t.Fatalf("components read back as %v", f.Body.Features[0].Components)
	}
	if d := strings.Join(Describe(&f.Body), "\n"); !strings.Contains(d, "suite version 2: 5 seats, concurrent, hard limit, grace 2h, no borrowing, package (suite) of cad, cam") {
		t.Errorf("description:\n%s", d)
	}
	for _, c := range []struct {
		fs   []Feature
		want string
	}{
		{[]Feature{{Name: "s", Count: 1, Components: []string{"s"}}}, `component "s" is the package itself`},
		{[]Feature{{Name: "s", Count: 1, Components: []string{"a", "a"}}}, `component "a" is listed twice`},
		{[]Feature{{Name: "s", Count: 1, Components: []string{"a b"}}}, `component: feature name "a b"`},
		{[]Feature{{Name: "s", Count: 1, Model: ModelNamedUser, Components: []string{"a"}}}, `a package (components) must use the "concurrent" model`},
		{[]Feature{{Name: "s", Count: 1, Components: []string{"a"}}, {Name: "a", Count: 1}}, "feature a is a component of package s and also a feature of its own"},
		{[]Feature{{Name: "s", Count: 1, Components: []string{"a"}}, {Name: "t", Count: 1, Components: []string{"a"}}}, "feature a is a component of two packages, s and t"},
		{[]Feature{{Name: "s", Count: 1, Components: []string{"a"}}, {Name: "s", Version: 2, Count: 1, Components: []string{"a", "b"}}}, "every version of a package lists the same components"},
	} {
		b := validBody()
		b.Features = c.fs
		n := b.normalized()
		if err := n.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate = %v, want %q", c.fs, err, c.want)
		}
		if _, err := Sign(b, priv); err == nil {
			t.Errorf("%+v: Sign accepted it", c.fs)
		}
	}
}

func TestFeatureSpecComponents(t *testing.T) {
	f, err := ParseFeatureSpec("suite:2.1:5,components=cad+cam+sim")
	if err != nil || !reflect.DeepEqual(f.Components, []string{"cad", "cam", "sim"}) || f.VersionText != "2.1" {
		t.Fatalf("ParseFeatureSpec = %+v, %v", f, err)
	}
	for spec, want := range map[string]string{
		"suite:1:5,components=cad+cad":                   `component "cad" is listed twice`,
		"suite:1:5,components=cad++cam":                  `feature name "" must be 1 to 64 characters`,
		"suite:1:5,model=countdown,hours=5,components=a": "must use the \"concurrent\" model",
		"suite:1:5,components=suite":                     "is the package itself",
	} {
		if _, err := ParseFeatureSpec(spec); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), spec) {
			t.Errorf("ParseFeatureSpec(%q) = %v, want %q", spec, err, want)
		}
	}
	spec, err := ParseIssueSpec([]byte(`{"features":[{"name":"suite","version":1,"count":2,"components":["cad","cam"]}]}`))
	if err != nil || !reflect.DeepEqual(spec.Features[0].Components, []string{"cad", "cam"}) {
		t.Fatalf("spec: %+v %v", spec, err)
	}
}
