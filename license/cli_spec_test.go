package license

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFeatureSpecOptions(t *testing.T) {
	base := Feature{Name: "cad", Version: 5, Count: 10, Model: ModelConcurrent, Limit: LimitHard}
	with := func(edit func(*Feature)) Feature {
		f := base
		edit(&f)
		return f
	}
	tests := []struct {
		spec string
		want Feature
		err  string
	}{
		// The old three-part form keeps working.
		{spec: "cad:5:10", want: base},
		{spec: "cad:5:10,model=concurrent,limit=hard", want: base},
		{spec: "cad:5:10,model=named-user", want: with(func(f *Feature) { f.Model = ModelNamedUser })},
		{spec: "cad:5:10,model=countdown,hours=500", want: with(func(f *Feature) { f.Model = ModelCountdown; f.UsageHours = 500 })},
		{spec: "cad:5:10,hours=500", want: with(func(f *Feature) { f.Model = ModelCountdown; f.UsageHours = 500 })},
		{spec: "cad:5:10,limit=soft,overdraft=2", want: with(func(f *Feature) { f.Limit = LimitSoft; f.Overdraft = 2 })},
		{spec: "cad:5:10,overdraft=2", want: with(func(f *Feature) { f.Limit = LimitSoft; f.Overdraft = 2 })},
		{spec: "cad:5:10,grace=30m", want: with(func(f *Feature) { f.GraceSeconds = 1800 })},
		{spec: "cad:5:10,grace=1s", want: with(func(f *Feature) { f.GraceSeconds = 1 })},
		{spec: "cad:5:10,borrow=72h", want: with(func(f *Feature) { f.MaxBorrowSeconds = 72 * 3600 })},
		{spec: "cad:5:10,borrow=0", want: base},
		{spec: "cad:5:10,borrow=1h30m", want: with(func(f *Feature) { f.MaxBorrowSeconds = 5400 })},
		{
			spec: " cad:5:10 , MODEL=countdown , hours=8,limit=soft,overdraft=1,grace=2h,borrow=24h ",
			want: Feature{Name: "cad", Version: 5, Count: 10, Model: ModelCountdown, UsageHours: 8, Limit: LimitSoft,
				Overdraft: 1, GraceSeconds: 7200, MaxBorrowSeconds: 86400},
		},
		// Errors in the name:version:count part keep their messages.
		{spec: "cad:5,model=named-user", err: "must be name:version:count"},
		{spec: "cad:5:0,model=named-user", err: `count "0" must be a whole number`},
		// Option errors.
		{spec: "cad:5:10,", err: `option "" must be KEY=VALUE`},
		{spec: "cad:5:10,model", err: `option "model" must be KEY=VALUE with KEY one of model, limit`},
		{spec: "cad:5:10,model=", err: "must be KEY=VALUE"},
		{spec: "cad:5:10,colour=red", err: `unknown option "colour": use model, limit, overdraft, grace, borrow, hours`},
		{spec: "cad:5:10,model=floating", err: "model=floating: use model=concurrent, model=named-user or model=countdown"},
		{spec: "cad:5:10,model=Named-User", err: "model=Named-User: use"},
		{spec: "cad:5:10,limit=medium", err: "limit=medium: use limit=hard or limit=soft"},
		{spec: "cad:5:10,model=named-user,model=concurrent", err: "option model is given twice"},
		{spec: "cad:5:10,overdraft=0", err: "overdraft=0 must be a whole number from 1"},
		{spec: "cad:5:10,overdraft=x", err: "overdraft=x must be a whole number"},
		{spec: "cad:5:10,hours=-1", err: "hours=-1 must be a whole number"},
		{spec: "cad:5:10,hours=4294967296", err: "hours=4294967296 must be a whole number"},
		{spec: "cad:5:10,grace=2", err: "grace=2 must be a duration such as 2h, 30m or 90s"},
		{spec: "cad:5:10,grace=0s", err: "grace=0s must be at least 1s"},
		{spec: "cad:5:10,grace=0", err: "grace=0 must be at least 1s"},
		{spec: "cad:5:10,grace=-1h", err: "grace=-1h must be at least 1s"},
		{spec: "cad:5:10,borrow=1.5s", err: "borrow=1.5s must be whole seconds"},
		{spec: "cad:5:10,borrow=-2h", err: "borrow=-2h must be at least 0s"},
		{spec: "cad:5:10,borrow=1200000h", err: "borrow=1200000h is too long"},
		{spec: "cad:5:10,model=countdown", err: "model=countdown needs hours=N"},
		{spec: "cad:5:10,model=named-user,hours=5", err: "hours=5 is only for model=countdown"},
		{spec: "cad:5:10,limit=soft", err: "limit=soft needs overdraft=N"},
		{spec: "cad:5:10,limit=hard,overdraft=3", err: "overdraft=3 needs limit=soft"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseFeatureSpec(tt.spec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseFeatureSpec(%q) = %+v, %v; want error containing %q", tt.spec, got, err, tt.err)
				}
				if !strings.Contains(err.Error(), `feature "`) {
					t.Errorf("error %q does not quote the feature", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseFeatureSpec(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
			// Whatever the spec parser accepts, the body's checks accept too.
			if err := validateFeatures([]Feature{got}); err != nil {
				t.Fatalf("ParseFeatureSpec(%q) accepted a feature the body refuses: %v", tt.spec, err)
			}
		})
	}
}

func TestParseIssueSpec(t *testing.T) {
	spec, err := ParseIssueSpec([]byte(`{
		"serial": "TRI-1", "issued_to": "Acme", "valid_after": "2026-01-01", "valid_until": "2027-01-01T12:00:00Z",
		"supersedes": ["TRI-0"], "binding": {"mode": "standalone", "computer_ids": ["id-a"]},
		"features": [{"name": "sim", "version": 2, "count": 5, "model": "countdown", "usage_hours": 500,
		              "limit": "soft", "overdraft": 1, "grace_seconds": 600, "max_borrow_seconds": 3600}],
		"description": "Evaluation"}`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 12, 1, 10, 30, 0, 500, time.FixedZone("x", 3600))
	b, err := spec.Body(now)
	if err != nil {
		t.Fatal(err)
	}
	want := Feature{Name: "sim", Version: 2, Count: 5, Model: ModelCountdown, UsageHours: 500, Limit: LimitSoft,
		Overdraft: 1, GraceSeconds: 600, MaxBorrowSeconds: 3600}
	if b.Serial != "TRI-1" || b.IssuedTo != "Acme" || b.Description != "Evaluation" ||
		len(b.Supersedes) != 1 || b.Supersedes[0] != "TRI-0" ||
		b.Binding.Mode != ModeStandalone || len(b.Binding.ComputerIDs) != 1 ||
		len(b.Features) != 1 || !reflect.DeepEqual(b.Features[0], want) {
		t.Errorf("Body = %+v", b)
	}
	if !b.IssuedAt.Equal(time.Date(2025, 12, 1, 9, 30, 0, 0, time.UTC)) ||
		!b.ValidAfter.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!b.ValidUntil.Equal(time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("times = %v %v %v", b.IssuedAt, b.ValidAfter, b.ValidUntil)
	}
	if err := b.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	// Defaults: valid_after is now, the mode follows the number of ids.
	spec, err = ParseIssueSpec([]byte(`{"issued_to": "A", "valid_until": "2027-01-01", "binding": {"computer_ids": ["a", "b", "c"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = spec.Body(now); err != nil || !b.ValidAfter.Equal(b.IssuedAt) || b.Binding.Mode != ModeFailover {
		t.Errorf("defaults: %+v, %v", b, err)
	}
}

func TestParseIssueSpecErrors(t *testing.T) {
	for _, tt := range []struct{ json, want string }{
		{`{"serial": "x", "customer": "Acme"}`, `spec has unknown field "customer": the spec may hold serial, issued_to`},
		{`{"binding": {"mode": "failover", "ids": []}}`, `unknown field "ids"`},
		{`{"features": [{"name": "cad", "seats": 3}]}`, `unknown field "seats"`},
		{`{"features": [{"name": "cad", "count": -1}]}`, "spec field features.count must be a JSON whole number in range, not number -1"},
		{`{"features": [{"name": "cad", "count": "3"}]}`, "features.count must be a JSON whole number in range, not string"},
		{`{"serial": 7}`, "spec field serial must be a JSON string, not number"},
		{`{"supersedes": "TRI-0"}`, "spec field supersedes must be a JSON array"},
		{`{"serial": "x",}`, "spec is not valid JSON at byte"},
		{`{"serial": "x"} {"serial": "y"}`, "extra data after the JSON object"},
		{`{"serial": "x"}}`, "extra data after the JSON object"},
		{``, "spec is not valid JSON"},
		{`[]`, "spec must be a JSON object {...}, not array"},
	} {
		_, err := ParseIssueSpec([]byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseIssueSpec(%s) = %v, want an error containing %q", tt.json, err, tt.want)
		}
	}
	if _, err := ParseIssueSpec(make([]byte, MaxFileSize+1)); err == nil || !strings.Contains(err.Error(), "1 MiB") {
		t.Errorf("huge spec: %v", err)
	}

	for _, tt := range []struct{ json, want string }{
		{`{"issued_to": "A", "binding": {"computer_ids": ["a"]}}`, "valid_until is not set"},
		{`{"valid_until": "next year"}`, `valid_until: date "next year" must be YYYY-MM-DD`},
		{`{"valid_until": "2027-01-01", "valid_after": "soon"}`, `valid_after: date "soon" must be YYYY-MM-DD`},
	} {
		spec, err := ParseIssueSpec([]byte(tt.json))
		if err != nil {
			t.Fatalf("ParseIssueSpec(%s): %v", tt.json, err)
		}
		if _, err := spec.Body(time.Now()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Body of %s = %v, want an error containing %q", tt.json, err, tt.want)
		}
	}
}

func TestParseFeatureSpecs(t *testing.T) {
	got, err := ParseFeatureSpecs("cad:5:10,b:2:3,model=named-user,sim:1:1,hours=5,borrow=1h")
	if err != nil {
		t.Fatal(err)
	}
	want := []Feature{
		{Name: "cad", Version: 5, Count: 10, Model: ModelConcurrent, Limit: LimitHard},
		{Name: "b", Version: 2, Count: 3, Model: ModelNamedUser, Limit: LimitHard},
		{Name: "sim", Version: 1, Count: 1, Model: ModelCountdown, Limit: LimitHard, UsageHours: 5, MaxBorrowSeconds: 3600},
	}
	if len(got) != len(want) {
		t.Fatalf("ParseFeatureSpecs = %+v", got)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("feature %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, tt := range []struct{ in, err string }{
		{"model=named-user,cad:5:10", `feature "model=named-user" must be name:version:count`},
		{"cad:5:10,b:2", `feature "b:2" must be name:version:count`},
		{"cad:5:10,model:countdown", `feature "model:countdown" must be name:version:count`},
		{"cad:5:10,,b:1:1", `option "" must be KEY=VALUE`},
	} {
		if _, err := ParseFeatureSpecs(tt.in); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseFeatureSpecs(%q) = %v, want an error containing %q", tt.in, err, tt.err)
		}
	}
}
