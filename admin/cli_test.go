package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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
	caFile, _ := testTLS(t)
	if !slices.Contains(args, "--ca") && !slices.Contains(args, "--insecure") {
		args = append([]string{"--ca", caFile}, args...)
	}
	err := app.RunContext(ctx, InterspersedArgs(app, append([]string{"triadctl"}, args...))) // as cmd/triadctl does
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
	// It still describes the file, and exits non-zero (1) for scripts.
	out, _, err = runCLI(t, "vendor", "inspect", "--trust", other+".pub", lic)
	if ec, ok := err.(cli.ExitCoder); !ok || ec.ExitCode() != 1 || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("inspect with the wrong key: %v, want exit status 1 saying it does not verify", err)
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
	if ec, ok := err.(cli.ExitCoder); !ok || ec.ExitCode() != 1 {
		t.Fatalf("inspect of a tampered license: %v, want exit status 1", err)
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
	_, serverTLS := testTLS(t)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
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

// TestCLIListingsJSON: every listing prints valid JSON with --output json.
func TestCLIListingsJSON(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	for _, tc := range []struct {
		args []string
		// want is a key and value of the first element (array) or the object.
		key, want string
	}{
		{[]string{"license", "list"}, "serial", "TRIAD-1"},
		{[]string{"usage", "features"}, "feature", "cad"},
		{[]string{"usage", "users"}, "user", "alice"},
		{[]string{"usage", "leases"}, "lease_id", "7"},
		{[]string{"usage", "denials"}, "member", "m1"},
		{[]string{"cluster", "status"}, "status", "operational"},
		{[]string{"cluster", "links"}, "state", "up"},
	} {
		out, _, err := runCLI(t, append([]string{"--server", addr, "--output", "json"}, tc.args...)...)
		if err != nil {
			t.Errorf("%v --output json: %v", tc.args, err)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("%v --output json printed invalid JSON %q: %v", tc.args, out, err)
			continue
		}
		obj, ok := v.(map[string]any)
		if arr, isArr := v.([]any); isArr && len(arr) > 0 {
			obj, ok = arr[0].(map[string]any)
		}
		if !ok || fmt.Sprint(obj[tc.key]) != tc.want {
			t.Errorf("%v --output json: %s = %v, want %s in\n%s", tc.args, tc.key, obj[tc.key], tc.want, out)
		}
	}
}

// TestCLIUsageFeaturesPool: `usage features` shows a countdown feature's
// pool use in the POOL column ("-" for other models) and in the JSON.
func TestCLIUsageFeaturesPool(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	out, _, err := runCLI(t, "--server", addr, "usage", "features")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "FEATURE VERSION CAPACITY IN USE POOL QUEUED" {
		t.Fatalf("usage features printed\n%s", out)
	}
	for i, want := range []string{"cad 5 10 2 - 3", "sim 2 5 1 3.2 h of 10 h used 0"} {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); got != want {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}

	out, _, err = runCLI(t, "--server", addr, "--output", "json", "usage", "features")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Feature         string  `json:"feature"`
		Model           string  `json:"model"`
		PoolSeconds     float64 `json:"pool_seconds"`
		PoolUsedSeconds float64 `json:"pool_used_seconds"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if len(rows) != 2 || rows[0].Model != "concurrent" || rows[0].PoolSeconds != 0 ||
		rows[1].Model != "countdown" || rows[1].PoolSeconds != 36000 || rows[1].PoolUsedSeconds != 11520 {
		t.Fatalf("usage features JSON: %+v\n%s", rows, out)
	}
}

// TestCLICompletionScripts: `triadctl completion bash|zsh` prints a script
// that asks triadctl for the completions; another shell is refused.
func TestCLICompletionScripts(t *testing.T) {
	for shell, wants := range map[string][]string{
		"bash": {"complete ", "-F _triadctl_complete triadctl", "--generate-bash-completion"},
		"zsh":  {"#compdef triadctl", "compdef _triadctl triadctl", "--generate-bash-completion"},
	} {
		out, _, err := runCLI(t, "completion", shell)
		if err != nil {
			t.Fatalf("completion %s: %v", shell, err)
		}
		if strings.TrimSpace(out) == "" {
			t.Fatalf("completion %s printed nothing", shell)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("completion %s lacks %q:\n%s", shell, w, out)
			}
		}
	}
	_, _, err := runCLI(t, "completion", "fish")
	wantErr(t, err, "bash|zsh", "fish")
}

// TestCLIHelp: the global help names the environment variables, and the
// --session flag shows a plain placeholder (urfave/cli takes a backquoted
// word of a usage text as the placeholder).
func TestCLIHelp(t *testing.T) {
	out, _, err := runCLI(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TRIAD_PASSWORD", "TRIAD_SESSION", "TRIAD_SERVER", "TRIAD_NEW_PASSWORD", "--session value", "completion"} {
		if !strings.Contains(out, want) {
			t.Errorf("triadctl --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "--session triadctl") {
		t.Errorf("--session shows a command as its placeholder:\n%s", out)
	}
}

// answerPrompts replaces the terminal prompt by answers keyed by a prefix of
// the prompt; it records the prompts asked.
func answerPrompts(t *testing.T, answers map[string]string) *[]string {
	t.Helper()
	var asked []string
	old := promptPassword
	promptPassword = func(prompt string) (string, bool) {
		asked = append(asked, prompt)
		for prefix, a := range answers {
			if strings.HasPrefix(prompt, prefix) {
				return a, true
			}
		}
		return "", false
	}
	t.Cleanup(func() { promptPassword = old })
	return &asked
}

func clearPasswordEnv(t *testing.T) {
	for _, v := range []string{"TRIAD_PASSWORD", "TRIAD_NEW_PASSWORD", "TRIAD_SESSION"} {
		t.Setenv(v, "")
	}
}

// TestCLIPasswordSetSendsPromptedPassword: the password typed at the connect
// prompt is the current full password of the change.
func TestCLIPasswordSetSendsPromptedPassword(t *testing.T) {
	clearPasswordEnv(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("Fu11-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{auth: AuthState{FullHash: hash, Version: 1}}
	addr := startAdminServer(t, b)
	asked := answerPrompts(t, map[string]string{"Password (full mode)": "Fu11-secret", "New full password": "N3w-secret", "Repeat it": "N3w-secret"})
	out, _, err := runCLI(t, "--server", addr, "password", "set", "full")
	if err != nil {
		t.Fatalf("password set full with the password typed at the prompt: %v (prompts %q)", err, *asked)
	}
	if !strings.Contains(out, "full password set") {
		t.Errorf("password set printed %q", out)
	}
	if got := b.AuthState(context.Background()).FullHash; bcrypt.CompareHashAndPassword(got, []byte("N3w-secret")) != nil {
		t.Fatalf("the full password was not changed to the new one")
	}
	for _, p := range *asked {
		if strings.HasPrefix(p, "Current") {
			t.Errorf("asked %q although the connect password was typed already", p)
		}
	}
}

// TestCLIPasswordSetWithSessionAsksCurrent: with a session from --session
// (no connect, so no password), a change refused for want of the current
// full password asks for it; without a terminal the refusal stands.
func TestCLIPasswordSetWithSessionAsksCurrent(t *testing.T) {
	clearPasswordEnv(t)
	b := &fakeBackend{}
	addr := startAdminServer(t, b)
	svc := NewService(b, "test")
	h := session(t, svc, ModeFull) // opened while no password is set
	hash, err := bcrypt.GenerateFromPassword([]byte("Fu11-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.auth = AuthState{FullHash: hash, Version: 1}
	b.mu.Unlock()
	t.Setenv("TRIAD_NEW_PASSWORD", "look-only")

	answerPrompts(t, nil) // no terminal
	_, _, err = runCLI(t, "--server", addr, "--session", h.SessionToken, "password", "set", "restricted")
	wantErr(t, err, "the current full password is wrong")
	if len(b.AuthState(context.Background()).RestrictedHash) != 0 {
		t.Fatal("a refused change set the restricted password")
	}

	asked := answerPrompts(t, map[string]string{"Current full password": "Fu11-secret"})
	if _, _, err := runCLI(t, "--server", addr, "--session", h.SessionToken, "password", "set", "restricted"); err != nil {
		t.Fatalf("password set with the current password typed at the prompt: %v (prompts %q)", err, *asked)
	}
	if rh := b.AuthState(context.Background()).RestrictedHash; bcrypt.CompareHashAndPassword(rh, []byte("look-only")) != nil {
		t.Fatal("the restricted password was not set")
	}
}

// TestCLIUsageLeasesConsistent: --consistent reaches the backend.
func TestCLIUsageLeasesConsistent(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		b := &fakeBackend{}
		addr := startAdminServer(t, b)
		args := []string{"--server", addr, "usage", "leases"}
		if consistent {
			args = append(args, "--consistent")
		}
		if _, _, err := runCLI(t, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		b.mu.Lock()
		got := b.leasesConsistent
		b.mu.Unlock()
		if got != consistent {
			t.Errorf("%v: backend got consistent=%v", args, got)
		}
	}
}

// TestLeaseStateColumn: the STATE column of usage leases names lingering
// seats with the time their linger ends, idle and borrowed leases.
func TestLeaseStateColumn(t *testing.T) {
	at := int64(1_700_000_000_000)
	tests := []struct {
		l    *triadv1.Lease
		want string
	}{
		{&triadv1.Lease{}, "held"},
		{&triadv1.Lease{Borrowed: true}, "borrowed"},
		{&triadv1.Lease{IdleSinceUnixMs: at}, "idle since " + fmtMs(at)},
		{&triadv1.Lease{Lingering: true, LingerUntilUnixMs: at, IdleSinceUnixMs: 5}, "lingering until " + fmtMs(at)},
	}
	for _, tt := range tests {
		if got := leaseState(tt.l); got != tt.want {
			t.Errorf("leaseState(%v) = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// TestCLIUsageQueue: `usage queue` lists the waiters in order with their
// wait times, as a table and as JSON with numbers as numbers; a
// restricted session may read it.
func TestCLIUsageQueue(t *testing.T) {
	fb := &fakeBackend{}
	addr := startAdminServer(t, fb)
	out, _, err := runCLI(t, "--server", addr, "usage", "queue", "--consistent")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"FEATURE VERSION POSITION COUNT USER HOST PID WAITING SINCE WAIT DEADLINE VIA",
		"cad 5 1 1 ann ws1 11 2023-11-14 22:13:20 UTC 2023-11-14 22:18:20 UTC m1",
		"cad 5 2 2 bob ws2 12 2023-11-14 22:13:21 UTC 2023-11-14 23:13:21 UTC m2",
	}
	if len(lines) != len(want) {
		t.Fatalf("usage queue printed\n%s", out)
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
	fb.mu.Lock()
	consistent := fb.consistent
	fb.mu.Unlock()
	if !consistent {
		t.Error("--consistent did not reach the backend")
	}
	out, _, err = runCLI(t, "--server", addr, "-o", "json", "usage", "queue")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("usage queue -o json printed %q: %v", out, err)
	}
	if rows[1]["position"] != 2.0 || rows[1]["user"] != "bob" || rows[1]["wait_deadline_unix_ms"] != 1_700_003_601_000.0 ||
		rows[0]["waiting_since"] != "2023-11-14T22:13:20Z" {
		t.Errorf("JSON rows %v", rows)
	}
}
