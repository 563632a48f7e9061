package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"

	"github.com/triadlm/triad/proto/triadv1"
)

// runCLI runs triadctl in-process and returns what it printed and its error.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runApp(t, App(), args...)
}

func runApp(t *testing.T, app *cli.App, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app.Writer = &out
	app.ErrWriter = &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := app.RunContext(ctx, append([]string{"triadctl"}, args...))
	return out.String(), errOut.String(), err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("command succeeded, want an error containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestCLIRejectsUnknownOutput(t *testing.T) {
	_, _, err := runCLI(t, "--output", "yaml", "server", "show")
	wantErr(t, err, `"yaml"`, "table", "json")
}

func TestCLIClusterCreateNeedsMembers(t *testing.T) {
	_, _, err := runCLI(t, "--server", "127.0.0.1:1", "cluster", "create")
	wantErr(t, err, "pass --members A,B,C", "--standalone")
	if strings.Contains(err.Error(), "unreachable") {
		t.Errorf("cluster create contacted a member before checking its flags: %v", err)
	}
}

// captureServers adds a command that records servers(c).
func captureServers(app *cli.App, got *[]string) {
	app.Commands = append(app.Commands, &cli.Command{
		Name: "capture-servers",
		Action: func(c *cli.Context) error {
			*got = servers(c)
			return nil
		},
	})
}

func TestServersSplitsCommaListsAndRepeats(t *testing.T) {
	t.Setenv("TRIAD_SERVER", "")
	os.Unsetenv("TRIAD_SERVER")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--server", "a:1,b:2", "--server", "c:3"}, []string{"a:1", "b:2", "c:3"}},
		{[]string{"-s", " a:1 , b:2,", "-s", "c:3"}, []string{"a:1", "b:2", "c:3"}},
		{nil, []string{"127.0.0.1:4085"}},
	} {
		var got []string
		app := App()
		captureServers(app, &got)
		if _, _, err := runApp(t, app, append(tc.args, "capture-servers")...); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("servers(%v) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestServersFromEnvironment(t *testing.T) {
	t.Setenv("TRIAD_SERVER", "x:1,y:2,z:3")
	var got []string
	app := App()
	captureServers(app, &got)
	if _, _, err := runApp(t, app, "capture-servers"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "x:1 y:2 z:3" {
		t.Errorf("servers from TRIAD_SERVER = %q, want [x:1 y:2 z:3]", got)
	}
}

func TestCLIVendorKeygenIssueInspect(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "vendor")
	out, _, err := runCLI(t, "vendor", "keygen", "--out", prefix)
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	if !strings.Contains(out, prefix+".key") || !strings.Contains(out, "key id") {
		t.Errorf("keygen printed %q", out)
	}
	for _, f := range []string{prefix + ".key", prefix + ".pub"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("keygen did not write %s: %v", f, err)
		}
	}
	if st, _ := os.Stat(prefix + ".key"); st.Mode().Perm()&0o077 != 0 {
		t.Errorf("private key mode %v is readable by others", st.Mode().Perm())
	}

	lic := filepath.Join(dir, "acme.lic")
	out, _, err = runCLI(t, "vendor", "issue", "--key", prefix+".key", "--customer", "ACME Corp",
		"--computer-ids", "TRD-0000-0000-0000-0001,TRD-0000-0000-0000-0002, TRD-0000-0000-0000-0003",
		"--feature", "cad:5:10", "--valid-until", "2099-12-31", "--serial", "TRIAD-TEST-1", "--out", lic)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if !strings.Contains(out, "TRIAD-TEST-1") || !strings.Contains(out, lic) {
		t.Errorf("issue printed %q", out)
	}

	out, _, err = runCLI(t, "vendor", "inspect", "--trust", prefix+".pub", lic)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if !strings.Contains(out, "signature: valid") {
		t.Errorf("inspect with the right key printed %q, want signature: valid", out)
	}
	for _, want := range []string{"TRIAD-TEST-1", "ACME Corp", "cad", "TRD-0000-0000-0000-0002"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCLI(t, "--output", "json", "vendor", "inspect", "--trust", prefix+".pub", lic)
	if err != nil {
		t.Fatalf("inspect --output json: %v", err)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("inspect --output json printed invalid JSON %q: %v", out, err)
	}
	if js["signature"] != "valid" {
		t.Errorf("JSON signature = %v, want valid", js["signature"])
	}

	// Without --trust the signature is not checked (and not claimed valid).
	out, _, err = runCLI(t, "vendor", "inspect", lic)
	if err != nil {
		t.Fatalf("inspect without --trust: %v", err)
	}
	if strings.Contains(out, "signature: valid") || !strings.Contains(out, "not checked") {
		t.Errorf("inspect without --trust printed %q", out)
	}

	// Another vendor's key does not verify it.
	other := filepath.Join(dir, "other")
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", other); err != nil {
		t.Fatalf("keygen other: %v", err)
	}
	out, _, err = runCLI(t, "vendor", "inspect", "--trust", other+".pub", lic)
	if err != nil {
		t.Fatalf("inspect with the wrong key: %v", err)
	}
	if !strings.Contains(out, "signature: INVALID") {
		t.Errorf("inspect with the wrong key printed %q, want INVALID", out)
	}

	// A file whose signed body was changed does not verify either. (The
	// '#' lines are comments for people and are not signed.)
	data, err := os.ReadFile(lic)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	changed := false
	for i, l := range lines {
		if enc, ok := strings.CutPrefix(l, "body: "); ok {
			body, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				t.Fatalf("body line is not base64: %v", err)
			}
			body = bytes.Replace(body, []byte("ACME Corp"), []byte("ACME Corq"), 1)
			lines[i] = "body: " + base64.StdEncoding.EncodeToString(body)
			changed = true
		}
	}
	if !changed {
		t.Fatalf("no body line in the license file:\n%s", data)
	}
	tampered := filepath.Join(dir, "tampered.lic")
	if err := os.WriteFile(tampered, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, "vendor", "inspect", "--trust", prefix+".pub", tampered)
	if err != nil {
		t.Fatalf("inspect of a tampered license: %v", err)
	}
	if !strings.Contains(out, "ACME Corq") || !strings.Contains(out, "signature: INVALID") {
		t.Errorf("inspect of a tampered license printed %q, want the changed body and INVALID", out)
	}
}

func TestCLIVendorIssueRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "vendor")
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", prefix); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	base := []string{"vendor", "issue", "--key", prefix + ".key", "--customer", "ACME", "--valid-until", "2099-12-31",
		"--out", filepath.Join(dir, "x.lic")}
	_, _, err := runCLI(t, append(base, "--computer-ids", "TRD-0000-0000-0000-0001,TRD-0000-0000-0000-0002", "--feature", "cad:5:10")...)
	wantErr(t, err, "computer_ids")
	_, _, err = runCLI(t, append(base, "--computer-ids", "TRD-0000-0000-0000-0001", "--feature", "cad:5")...)
	wantErr(t, err, "--feature", "name:version:count")
	if _, err := os.Stat(filepath.Join(dir, "x.lic")); err == nil {
		t.Errorf("a refused issue wrote the license file")
	}
}

func TestCLIKeygenRefusesOverwrite(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "vendor")
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", prefix); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	key, _ := os.ReadFile(prefix + ".key")
	pub, _ := os.ReadFile(prefix + ".pub")
	_, _, err := runCLI(t, "vendor", "keygen", "--out", prefix)
	wantErr(t, err, prefix+".key", "already exists")
	if got, _ := os.ReadFile(prefix + ".key"); !bytes.Equal(got, key) {
		t.Errorf("keygen overwrote the existing private key")
	}
	if got, _ := os.ReadFile(prefix + ".pub"); !bytes.Equal(got, pub) {
		t.Errorf("keygen overwrote the existing public key")
	}
}

func TestCLIKeygenRefusesToOverwriteLonePublicKey(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "vendor")
	if err := os.WriteFile(prefix+".pub", []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCLI(t, "vendor", "keygen", "--out", prefix)
	wantErr(t, err, prefix+".pub", "already exists")
	if got, _ := os.ReadFile(prefix + ".pub"); string(got) != "precious" {
		t.Errorf("keygen overwrote an existing public key")
	}
	if _, err := os.Stat(prefix + ".key"); err == nil {
		t.Errorf("keygen wrote a private key although it refused")
	}
}

func TestCLIUnreachableServer(t *testing.T) {
	_, _, err := runCLI(t, "--server", "127.0.0.1:1", "--timeout", "2s", "server", "show")
	wantErr(t, err, "127.0.0.1:1", "unreachable")
}

// startAdminServer serves the admin service over a fake backend on loopback.
func startAdminServer(t *testing.T, b Backend) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	triadv1.RegisterAdminServer(srv, NewService(b, "test"))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestCLIAgainstService(t *testing.T) {
	b := &fakeBackend{}
	addr := startAdminServer(t, b)

	// The first address is dead: the CLI moves on to the next one.
	out, _, err := runCLI(t, "--server", "127.0.0.1:1,"+addr, "--timeout", "5s", "server", "show")
	if err != nil {
		t.Fatalf("server show: %v", err)
	}
	for _, want := range []string{"m1", "TRD-0000-0000-0000-0001", "failover"} {
		if !strings.Contains(out, want) {
			t.Errorf("server show output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runCLI(t, "--server", addr, "--output", "json", "server", "show")
	if err != nil {
		t.Fatalf("server show --output json: %v", err)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("invalid JSON %q: %v", out, err)
	}
	if js["computer_id"] != "TRD-0000-0000-0000-0001" || js["name"] != "m1" {
		t.Errorf("JSON = %v", js)
	}

	if _, _, err := runCLI(t, "--server", addr, "cluster", "create", "--members", "a:1,b:1", "--members", "c:1"); err != nil {
		t.Fatalf("cluster create: %v", err)
	}
	b.mu.Lock()
	members := strings.Join(b.members, " ")
	b.mu.Unlock()
	if members != "a:1 b:1 c:1" {
		t.Errorf("backend got members %q, want a:1 b:1 c:1", members)
	}

	// A refusal that is not Unavailable is reported at once, with its message.
	b.enrollErr = nil
	lic := filepath.Join(t.TempDir(), "empty.lic")
	if err := os.WriteFile(lic, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI(t, "--server", addr, "license", "enroll", lic)
	wantErr(t, err, addr, "1 MiB")
}
