package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCLIGlobalFlagsAfterCommand: global flags work after the command as
// they do before it (kubectl, etcdctl), the one after the command wins,
// and a bad value is refused wherever it is given.
func TestCLIGlobalFlagsAfterCommand(t *testing.T) {
	t.Setenv("TRIAD_SERVER", "")
	addr := startAdminServer(t, &fakeBackend{})
	for _, args := range [][]string{
		{"--server", addr, "-o", "json", "usage", "leases"},
		{"usage", "leases", "--server", addr, "-o", "json"},
		{"--server", addr, "usage", "leases", "--output", "json"},
		{"-o", "table", "usage", "leases", "-s", addr, "-o", "json"},
		{"--server", "127.0.0.1:1", "usage", "leases", "--server", addr, "--timeout", "5s", "-o", "json"},
	} {
		out, _, err := runCLI(t, args...)
		if err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		var v []map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 || v[0]["lease_id"] != float64(7) {
			t.Errorf("%v printed %q (%v), want a JSON list with lease_id 7 as a number", args, out, err)
		}
	}
	_, _, err := runCLI(t, "usage", "leases", "--server", addr, "-o", "yaml")
	wantErr(t, err, `--output "yaml"`, "use table, json or csv")
	_, _, err = runCLI(t, "usage", "leases", "--server", addr, "-o", "csv")
	wantErr(t, err, "--output csv is for triadctl report only")
	_, _, err = runCLI(t, "-o", "csv", "usage", "leases", "--server", addr)
	wantErr(t, err, "--output csv is for triadctl report only")
	_, _, err = runCLI(t, "usage", "leases", "--server", addr, "--mode", "root")
	wantErr(t, err, `--mode "root"`)
	// The environment gives way to a flag before the command too.
	t.Setenv("TRIAD_SERVER", "127.0.0.1:1")
	if _, _, err := runCLI(t, "--server", addr, "usage", "leases"); err != nil {
		t.Errorf("--server before the command with TRIAD_SERVER set: %v", err)
	}
	// vendor issue keeps its own --key (the signing key), not --cert's.
	var issue *cli.Command
	for _, c := range App().Commands {
		if c.Name == "vendor" {
			for _, s := range c.Subcommands {
				if s.Name == "issue" {
					issue = s
				}
			}
		}
	}
	n := 0
	for _, f := range issue.Flags {
		for _, name := range f.Names() {
			if name == "key" {
				n++
				if u := f.(cli.DocGenerationFlag).GetUsage(); strings.Contains(u, "--cert") {
					t.Errorf("vendor issue --key is the TLS key: %q", u)
				}
			}
		}
	}
	if n != 1 {
		t.Errorf("vendor issue has %d --key flags, want 1", n)
	}
}

// TestCLINoHeaders: --no-headers leaves out the column header line only.
func TestCLINoHeaders(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	with, _, err := runCLI(t, "--server", addr, "usage", "features")
	if err != nil {
		t.Fatal(err)
	}
	without, _, err := runCLI(t, "--server", addr, "usage", "features", "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	wl := strings.Split(strings.TrimSpace(with), "\n")
	nl := strings.Split(strings.TrimSpace(without), "\n")
	if !strings.HasPrefix(wl[0], "FEATURE") || len(nl) != len(wl)-1 || strings.Contains(without, "FEATURE") {
		t.Fatalf("with headers:\n%s\nwithout:\n%s", with, without)
	}
	if strings.Fields(nl[0])[0] != "cad" {
		t.Errorf("first row without headers = %q", nl[0])
	}
}

// walk calls fn for every command of the tree with its path.
func walk(cmds []*cli.Command, path string, fn func(string, *cli.Command)) {
	for _, c := range cmds {
		p := strings.TrimSpace(path + " " + c.Name)
		fn(p, c)
		walk(c.Subcommands, p, fn)
	}
}

// TestCLIEveryFlagHasHelp: every command and every flag of every command
// says what it is for, and every command with an action accepts the
// global flags.
func TestCLIEveryFlagHasHelp(t *testing.T) {
	app := App()
	for _, f := range app.Flags {
		if f.(cli.DocGenerationFlag).GetUsage() == "" {
			t.Errorf("global flag --%s has no usage text", f.Names()[0])
		}
	}
	n := 0
	walk(app.Commands, "", func(path string, c *cli.Command) {
		n++
		if c.Usage == "" {
			t.Errorf("command %q has no usage text", path)
		}
		for _, f := range c.Flags {
			if f.(cli.DocGenerationFlag).GetUsage() == "" {
				t.Errorf("%s --%s has no usage text", path, f.Names()[0])
			}
		}
		if c.Action == nil {
			return
		}
		has := map[string]bool{}
		for _, f := range c.Flags {
			for _, name := range f.Names() {
				has[name] = true
			}
		}
		for _, g := range []string{"server", "output", "timeout", "no-headers", "ca", "insecure"} {
			if !has[g] {
				t.Errorf("%s does not accept --%s after it", path, g)
			}
		}
	})
	if n < 40 {
		t.Errorf("walked only %d commands", n)
	}
}

// TestCLIVendorIssueRefusesExpired: a license whose end is already past is
// not signed (it could only be refused at enrollment), unless asked.
func TestCLIVendorIssueRefusesExpired(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "v")
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", prefix); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "old.lic")
	args := []string{"vendor", "issue", "--key", prefix + ".key", "--customer", "ACME", "--computer-ids", "a,b,c",
		"--feature", "cad:1:1", "--valid-after", "2020-01-01", "--valid-until", "2021-01-01", "--out", out}
	_, _, err := runCLI(t, args...)
	wantErr(t, err, "would be expired already", "2021-01-01 23:59:59 UTC", "--valid-until")
	if _, statErr := os.Stat(out); statErr == nil {
		t.Errorf("an expired license was written to %s", out)
	}
	if _, _, err := runCLI(t, append(args, "--allow-expired")...); err != nil {
		t.Fatalf("--allow-expired: %v", err)
	}
}

// TestOneError: a failed checkout says what failed once.
func TestOneError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.ResourceExhausted, "no seat left for cad v 0 (10 of 10 in use)"), "checkout cad: no seat left for cad v 0 (10 of 10 in use)"},
		{fmt.Errorf("triad: checkout: %w", errors.New("no member answered")), "checkout cad: no member answered"},
		{errors.New("triad: checkout: invalid argument: feature is empty"), "checkout cad: invalid argument: feature is empty"},
		{errors.New("dial tcp: refused"), "checkout cad: dial tcp: refused"},
	} {
		if got := oneError("checkout cad", tc.err).Error(); got != tc.want {
			t.Errorf("oneError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestInterspersedArgs: flags after a command's arguments are moved before
// them, with their values; "--" ends flags; completion's flag stays last.
func TestInterspersedArgs(t *testing.T) {
	app := App()
	for _, tc := range []struct{ in, want string }{
		{"license remove SERIAL --yes", "license remove --yes SERIAL"},
		{"-s a:1 usage release 12 13 -o json --server b:2", "-s a:1 usage release -o json --server b:2 12 13"},
		{"usage release 12 --user=bob", "usage release --user=bob 12"},
		{"license enroll --timeout 5s a.lic", "license enroll --timeout 5s a.lic"},
		{"license enroll a.lic -- --odd.lic", "license enroll a.lic -- --odd.lic"},
		{"usage release 12 --generate-bash-completion", "usage release 12 --generate-bash-completion"},
		{"cluster status -o json", "cluster status -o json"},
	} {
		got := strings.Join(InterspersedArgs(app, append([]string{"triadctl"}, strings.Fields(tc.in)...))[1:], " ")
		if got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCLIVersionShowsClientAndServer: `triadctl version` shows triadctl's
// build and each member's, like kubectl version; --client only its own.
func TestCLIVersionShowsClientAndServer(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	out, _, err := runCLI(t, "version", "--server", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "triadctl ") || !strings.Contains(out, "m1") || !strings.Contains(out, addr) {
		t.Errorf("version printed\n%s", out)
	}
	out, _, err = runCLI(t, "version", "--client", "--server", "127.0.0.1:1")
	if err != nil || strings.Contains(out, "127.0.0.1:1") || !strings.HasPrefix(out, "triadctl ") {
		t.Errorf("version --client: %v\n%s", err, out)
	}
}

// TestCLICompletesFeatureNames: after --feature, completion lists the
// cluster's feature names (asked of the --server member); elsewhere flags.
func TestCLICompletesFeatureNames(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	caFile, _ := testTLS(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"usage", "release", "--feature"}, []string{"cad", "sim"}},
		{[]string{"usage", "all", "-f"}, []string{"cad", "sim"}},
		{[]string{"checkout", "--feature"}, []string{"cad", "sim"}},
		{[]string{"usage", "release", "--us"}, []string{"--user"}},
	} {
		args := append([]string{"triadctl", "--ca", caFile, "--server", addr}, tc.args...)
		args = append(args, "--generate-bash-completion")
		old := os.Args
		os.Args = args
		var out bytes.Buffer
		app := App()
		app.Writer = &out
		err := app.Run(args)
		os.Args = old
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("completion of %v lacks %q:\n%s", tc.args, w, out.String())
			}
		}
	}
}

// TestCLIJSONNumbersEverywhere walks the JSON of every reading command
// (against the fake backend, whose answers carry 64-bit counters, ids and
// times): no integer may come out as a string, as protojson writes them.
func TestCLIJSONNumbersEverywhere(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	intString := regexp.MustCompile(`^-?[0-9]+$`)
	var walkJSON func(path string, v any) []string
	walkJSON = func(path string, v any) []string {
		var bad []string
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				bad = append(bad, walkJSON(path+"."+k, x)...)
			}
		case []any:
			for i, x := range v {
				bad = append(bad, walkJSON(fmt.Sprintf("%s[%d]", path, i), x)...)
			}
		case string:
			if intString.MatchString(v) {
				bad = append(bad, fmt.Sprintf("%s = %q", path, v))
			}
		}
		return bad
	}
	numbers := 0
	var count func(v any)
	count = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				count(x)
			}
		case []any:
			for _, x := range v {
				count(x)
			}
		case float64:
			numbers++
		}
	}
	for _, args := range [][]string{
		{"server", "show"}, {"cluster", "status"}, {"cluster", "links"}, {"license", "list"}, {"license", "show", "TRIAD-1"},
		{"usage"}, {"usage", "all"}, {"usage", "features"}, {"usage", "users"}, {"usage", "leases"}, {"usage", "denials"},
		{"rules", "show"}, {"vendor", "trust", "list"}, {"version"},
	} {
		out, _, err := runCLI(t, append(args, "--server", addr, "-o", "json")...)
		if err != nil {
			t.Errorf("%v -o json: %v", args, err)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("%v -o json: invalid JSON %q: %v", args, out, err)
			continue
		}
		for _, b := range walkJSON(strings.Join(args, " "), v) {
			t.Errorf("a number as a string: %s", b)
		}
		count(v)
	}
	if numbers < 20 {
		t.Errorf("only %d numbers in all the JSON outputs: the walk saw too little", numbers)
	}
}
