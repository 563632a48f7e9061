package license

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Dotted versions travel as version (the first component) plus
// version_text; whole numbers keep the old encoding.
func TestDottedVersionsSignParseAndDescribe(t *testing.T) {
	_, priv := testKey(1)
	b := validBody()
	b.Features = []Feature{
		{Name: "rhino", Version: 2, VersionText: "2.1", Count: 5},
		{Name: "rhino", Version: 2, VersionText: "2.10", Count: 1},
		{Name: "rhino", Version: 3, Count: 2},
		{Name: "cal", Version: 2024, VersionText: "2024.06", Count: 4},
		{Name: "sim", Version: 5, VersionText: "5.3.1", Count: 1},
	}
	file := mustSign(t, b, priv)
	f := mustParse(t, file)
	body, _ := base64.StdEncoding.DecodeString(string(bytes.Fields(bytes.SplitN(file, []byte("body:"), 2)[1])[0]))
	for _, want := range []string{`"version":2,"count":5`, `"version_text":"2.1"`, `"version_text":"2024.06"`, `"name":"rhino","version":3,"count":2,"model":"concurrent","grace_seconds":0,"max_borrow_seconds":0,"limit":"hard"}`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %s:\n%s", want, body)
		}
	}
	got := f.Body.Features
	if got[0].VersionString() != "2.1" || got[3].VersionString() != "2024.06" || got[2].VersionString() != "3" {
		t.Errorf("versions read back as %q %q %q", got[0].VersionString(), got[3].VersionString(), got[2].VersionString())
	}
	if !(got[1].VersionKey() > got[0].VersionKey() && got[2].VersionKey() > got[1].VersionKey()) {
		t.Error("2.1 < 2.10 < 3 does not hold for the keys")
	}
	desc := strings.Join(Describe(&f.Body), "\n")
	for _, want := range []string{"rhino version 2.1: 5 seats", "rhino version 2.10: 1 seats", "cal version 2024.06: 4 seats", "rhino version 3: 2 seats"} {
		if !strings.Contains(string(file), want) && !strings.Contains(desc, want) {
			t.Errorf("description lacks %q:\n%s", want, desc)
		}
	}
}

// A whole-number license's body has no version_text: its bytes are those
// older builds wrote.
func TestWholeVersionBodyUnchanged(t *testing.T) {
	_, priv := testKey(1)
	f := mustParse(t, mustSign(t, validBody(), priv))
	if bytes.Contains(f.BodyBytes, []byte("version_text")) {
		t.Errorf("whole-number body carries version_text: %s", f.BodyBytes)
	}
}

func TestDottedVersionValidation(t *testing.T) {
	for _, c := range []struct {
		f    Feature
		want string
	}{
		{Feature{Name: "a", Version: 3, VersionText: "2.1", Count: 1}, `does not start with the version field's 3`},
		{Feature{Name: "a", Version: 2, VersionText: "2", Count: 1}, "is a whole number"},
		{Feature{Name: "a", Version: 2, VersionText: "2.x", Count: 1}, `minor component "x" is not a whole number`},
		{Feature{Name: "a", Version: 2, VersionText: "2.1.2.3", Count: 1}, "at most three"},
		{Feature{Name: "a", Version: 2, VersionText: "2.70000", Count: 1}, "larger than 65535"},
	} {
		b := validBody()
		b.Features = []Feature{c.f}
		n := b.normalized()
		err := n.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "features[0]") {
			t.Errorf("%+v: Validate = %v, want %q naming the feature", c.f, err, c.want)
		}
	}
	// 2 and 2.0 are the same version: one entry only.
	b := validBody()
	b.Features = []Feature{{Name: "a", Version: 2, Count: 1}, {Name: "a", Version: 2, VersionText: "2.0", Count: 1}}
	n := b.normalized()
	if err := n.Validate(); err == nil || !strings.Contains(err.Error(), "same name and version as features[0]") {
		t.Errorf("2 and 2.0: %v", err)
	}
	// A version_text added to a signed body by hand is refused by the
	// signature, and one Validate refuses never parses.
	_, priv := testKey(1)
	bad := validBody()
	bad.Features = []Feature{{Name: "a", Version: 2, VersionText: "3.1", Count: 1}}
	if _, err := Sign(bad, priv); err == nil {
		t.Error("Sign accepted version 2 with version_text 3.1")
	}
	good := validBody()
	good.Features = []Feature{{Name: "a", Version: 3, VersionText: "3.1", Count: 1}}
	raw, _ := json.Marshal(good.normalized())
	edited := bytes.Replace(raw, []byte(`"version":3,`), []byte(`"version":2,`), 1)
	if _, err := Parse(signedRaw(edited)); err == nil || !strings.Contains(err.Error(), "does not start with") {
		t.Errorf("Parse of a body whose version disagrees with its text: %v", err)
	}
}

func TestFeatureSpecDottedVersions(t *testing.T) {
	for spec, want := range map[string][2]any{
		"rhino:2.1:5":        {uint32(2), "2.1"},
		"cal:2024.06:4":      {uint32(2024), "2024.06"},
		"sim:5.3.1:1":        {uint32(5), "5.3.1"},
		"cad:7:3,limit=hard": {uint32(7), ""},
	} {
		f, err := ParseFeatureSpec(spec)
		if err != nil || f.Version != want[0] || f.VersionText != want[1] {
			t.Errorf("ParseFeatureSpec(%q) = %d %q, %v; want %v", spec, f.Version, f.VersionText, err, want)
		}
	}
	for spec, want := range map[string]string{
		"rhino:2..1:5":    `version "2..1": the minor component "" is not a whole number`,
		"rhino:2.1.1.1:5": "has 4 components",
		"rhino:2.99999:5": "minor component 99999 is larger than 65535",
	} {
		if _, err := ParseFeatureSpec(spec); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), spec) {
			t.Errorf("ParseFeatureSpec(%q) = %v, want %q", spec, err, want)
		}
	}
	fs, err := ParseFeatureSpecs("rhino:2.1:5,cad:3:1")
	if err != nil || len(fs) != 2 || fs[0].VersionText != "2.1" {
		t.Errorf("ParseFeatureSpecs = %+v, %v", fs, err)
	}
}

func TestIssueSpecDottedVersions(t *testing.T) {
	spec, err := ParseIssueSpec([]byte(`{"issued_to":"A","valid_until":"2027-01-01","binding":{"computer_ids":["x"]},
		"features":[{"name":"rhino","version_text":"2.1","count":5},{"name":"cad","version":3,"count":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := spec.Body(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if f := b.Features[0]; f.Version != 2 || f.VersionText != "2.1" {
		t.Errorf("version_text alone gives %d %q", f.Version, f.VersionText)
	}
	b.Serial = "S"
	n := b.normalized()
	if err := n.Validate(); err != nil {
		t.Errorf("spec body: %v", err)
	}
	for in, want := range map[string]string{
		`{"features":[{"name":"rhino","version":2.1,"count":5}]}`:   `give "version_text": "2.1"`,
		`{"features":[{"name":"rhino","version":"2.1","count":5}]}`: `give "version_text": "2.1"`,
	} {
		if _, err := ParseIssueSpec([]byte(in)); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "features.version") {
			t.Errorf("ParseIssueSpec(%s) = %v, want %q", in, err, want)
		}
	}
}
