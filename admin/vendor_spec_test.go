package admin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vendorKey makes a key pair in a temporary directory and returns its prefix.
func vendorKey(t *testing.T) (dir, prefix string) {
	t.Helper()
	dir = t.TempDir()
	prefix = filepath.Join(dir, "vendor")
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", prefix); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	return dir, prefix
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// inspect runs `vendor inspect --trust` and checks the text and JSON output.
func inspect(t *testing.T, prefix, lic string, wants ...string) map[string]any {
	t.Helper()
	out, _, err := runCLI(t, "vendor", "inspect", "--trust", prefix+".pub", lic)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	for _, w := range append(wants, "signature: valid") {
		if !strings.Contains(out, w) {
			t.Errorf("inspect output lacks %q:\n%s", w, out)
		}
	}
	out, _, err = runCLI(t, "--output", "json", "vendor", "inspect", "--trust", prefix+".pub", lic)
	if err != nil {
		t.Fatalf("inspect --output json: %v", err)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("inspect --output json printed %q: %v", out, err)
	}
	if js["signature"] != "valid" {
		t.Errorf("JSON signature = %v, want valid", js["signature"])
	}
	return js["body"].(map[string]any)
}

const testSpec = `{
  "serial": "TRI-SPEC-1",
  "issued_to": "Acme Engineering GmbH",
  "valid_after": "2026-01-01",
  "valid_until": "2099-12-31",
  "supersedes": ["TRI-OLD-1"],
  "binding": {"mode": "failover", "computer_ids": ["id-a", "id-b", "id-c"]},
  "features": [
    {"name": "sim", "version": 2, "count": 5, "model": "countdown", "usage_hours": 500, "max_borrow_seconds": 259200},
    {"name": "cad", "version": 5, "count": 10, "model": "named-user", "limit": "soft", "overdraft": 2, "grace_seconds": 600}
  ],
  "description": "Annual subscription"
}`

func TestCLIVendorIssueFromSpec(t *testing.T) {
	dir, prefix := vendorKey(t)
	spec := writeFile(t, filepath.Join(dir, "spec.json"), testSpec)
	lic := filepath.Join(dir, "spec.lic")
	out, _, err := runCLI(t, "vendor", "issue", "--key", prefix+".key", "--spec", spec, "--out", lic)
	if err != nil {
		t.Fatalf("issue --spec: %v", err)
	}
	if !strings.Contains(out, "TRI-SPEC-1") {
		t.Errorf("issue printed %q", out)
	}
	body := inspect(t, prefix, lic,
		"TRI-SPEC-1", "Acme Engineering GmbH", "Supersedes:  TRI-OLD-1", "id-a, id-b, id-c",
		"from 2026-01-01 00:00:00 UTC until 2099-12-31 23:59:59 UTC",
		"sim version 2: 5 seats, countdown of 500 usage hours, hard limit, grace 2h, borrow up to 72h",
		"cad version 5: 10 seats, named-user, soft (overdraft 2) limit, grace 10m, no borrowing",
		"Description: Annual subscription")
	if body["description"] != "Annual subscription" {
		t.Errorf("JSON body = %v", body)
	}

	// Flags override the spec: customer, description, ids (and so the mode),
	// the whole feature list, and --grace for features without grace=.
	lic2 := filepath.Join(dir, "override.lic")
	_, _, err = runCLI(t, "vendor", "issue", "--key", prefix+".key", "--spec", spec, "--out", lic2,
		"--customer", "Beta AG", "--serial", "TRI-SPEC-2", "--description", "Evaluation", "--computer-ids", "id-z",
		"--valid-until", "2099-06-30", "--grace", "120",
		"--feature", "cam:1:3,overdraft=1", "--feature", "cad:5:4,grace=30m")
	if err != nil {
		t.Fatalf("issue --spec with overrides: %v", err)
	}
	out2, _, _ := runCLI(t, "vendor", "inspect", "--trust", prefix+".pub", lic2)
	inspect(t, prefix, lic2, "TRI-SPEC-2", "Beta AG", "standalone member, computer id id-z", "until 2099-06-30 23:59:59 UTC",
		"cam version 1: 3 seats, concurrent, soft (overdraft 1) limit, grace 2m, no borrowing",
		"cad version 5: 4 seats, concurrent, hard limit, grace 30m, no borrowing",
		"Description: Evaluation", "Supersedes:  TRI-OLD-1")
	if strings.Contains(out2, "sim") || strings.Contains(out2, "Acme") {
		t.Errorf("flags did not replace the spec's values:\n%s", out2)
	}

	// --grace alone overrides the spec's per-feature grace.
	lic3 := filepath.Join(dir, "grace.lic")
	if _, _, err := runCLI(t, "vendor", "issue", "--key", prefix+".key", "--spec", spec, "--out", lic3, "--grace", "900"); err != nil {
		t.Fatalf("issue --spec --grace: %v", err)
	}
	inspect(t, prefix, lic3, "sim version 2: 5 seats, countdown of 500 usage hours, hard limit, grace 15m",
		"cad version 5: 10 seats, named-user, soft (overdraft 2) limit, grace 15m")
}

func TestCLIVendorIssueExtendedFeatureFlags(t *testing.T) {
	dir, prefix := vendorKey(t)
	lic := filepath.Join(dir, "flags.lic")
	_, _, err := runCLI(t, "vendor", "issue", "--key", prefix+".key", "--customer", "ACME Corp",
		"--computer-ids", "TRD-1,TRD-2,TRD-3", "--valid-until", "2099-12-31", "--serial", "TRI-FLAGS-1",
		"--description", "Countdown trial", "--out", lic,
		"--feature", "sim:2:5,model=countdown,hours=500,borrow=72h",
		"--feature", "cad:5:10,limit=soft,overdraft=2,grace=10m",
		"--feature", "viewer:1:50,model=named-user",
		"--feature", "old:3:1,older:2:1")
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	body := inspect(t, prefix, lic, "TRI-FLAGS-1", "Description: Countdown trial",
		"sim version 2: 5 seats, countdown of 500 usage hours, hard limit, grace 2h, borrow up to 72h",
		"cad version 5: 10 seats, concurrent, soft (overdraft 2) limit, grace 10m, no borrowing",
		"viewer version 1: 50 seats, named-user, hard limit",
		"old version 3: 1 seats, concurrent, hard limit, grace 2h, no borrowing",
		"older version 2: 1 seats") // the old comma-separated list still works
	features := body["features"].([]any)
	sim := features[0].(map[string]any)
	if sim["usage_hours"] != float64(500) || sim["max_borrow_seconds"] != float64(259200) || sim["model"] != "countdown" {
		t.Errorf("JSON feature = %v", sim)
	}
	cad := features[1].(map[string]any)
	if cad["limit"] != "soft" || cad["overdraft"] != float64(2) || cad["grace_seconds"] != float64(600) {
		t.Errorf("JSON feature = %v", cad)
	}
}

func TestCLIVendorIssueSpecRefusals(t *testing.T) {
	dir, prefix := vendorKey(t)
	out := filepath.Join(dir, "x.lic")
	issue := func(args ...string) error {
		_, _, err := runCLI(t, append([]string{"vendor", "issue", "--key", prefix + ".key", "--out", out}, args...)...)
		return err
	}
	bad := writeFile(t, filepath.Join(dir, "bad.json"), `{"issued_to": "A", "customer": "B"}`)
	wantErr(t, issue("--spec", bad), "--spec "+bad, `unknown field "customer"`, "issued_to")
	badFeature := writeFile(t, filepath.Join(dir, "badf.json"), `{"features": [{"name": "cad", "seats": 3}]}`)
	wantErr(t, issue("--spec", badFeature), `unknown field "seats"`, "usage_hours")
	wantErr(t, issue("--spec", filepath.Join(dir, "missing.json")), "--spec", "missing.json")

	// What neither the spec nor the flags give is asked for by both names.
	partial := writeFile(t, filepath.Join(dir, "partial.json"), `{"issued_to": "A"}`)
	wantErr(t, issue("--spec", partial), "--computer-ids", "binding.computer_ids")
	wantErr(t, issue("--spec", partial, "--computer-ids", "a"), "--feature", "features in --spec")
	wantErr(t, issue("--spec", partial, "--computer-ids", "a", "--feature", "cad:1:1"), "--valid-until", "valid_until")
	wantErr(t, issue("--computer-ids", "a", "--feature", "cad:1:1", "--valid-until", "2099-01-01"), "--customer", "issued_to")

	dates := writeFile(t, filepath.Join(dir, "dates.json"), `{"issued_to": "A", "valid_until": "soon",
		"binding": {"computer_ids": ["a"]}, "features": [{"name": "cad", "version": 1, "count": 1}]}`)
	wantErr(t, issue("--spec", dates), "--spec "+dates, `valid_until: date "soon"`)
	wantErr(t, issue("--spec", dates, "--valid-until", "later"), "--valid-until", `"later"`)
	if err := issue("--spec", dates, "--valid-until", "2099-01-01"); err != nil {
		t.Errorf("--valid-until did not override the spec's bad date: %v", err)
	}
	os.Remove(out)

	// The body's own checks still apply to spec values.
	invalid := writeFile(t, filepath.Join(dir, "invalid.json"), `{"issued_to": "A", "valid_until": "2099-01-01",
		"binding": {"computer_ids": ["a"]}, "features": [{"name": "cad", "version": 1, "count": 1, "limit": "soft"}]}`)
	wantErr(t, issue("--spec", invalid), "soft limit needs an overdraft")
	wantErr(t, issue("--spec", partial, "--computer-ids", "a", "--valid-until", "2099-01-01", "--feature", "cad:1:1,model=countdown"),
		"--feature", "model=countdown needs hours=N")
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused issue wrote the license file")
	}
}
