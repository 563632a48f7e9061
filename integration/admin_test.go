package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/proto/triadv1"
)

// ctlEnv runs triadctl with extra environment variables (TRIAD_SESSION,
// TRIAD_PASSWORD, ...) and full arguments; stdin is not a terminal, so no
// prompt is ever shown.
func ctlEnv(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadctl"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("triadctl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// openSession runs `triadctl connect` and returns the session token.
func openSession(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	out, err := ctlEnv(t, env, append(append([]string{"--output", "json"}, args...), "connect")...)
	if err != nil {
		return "", err
	}
	var resp struct {
		Token string `json:"session_token"`
		Mode  string `json:"mode"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Token == "" {
		t.Fatalf("connect answered %q (%v)", out, err)
	}
	return resp.Token, nil
}

func mustOpen(t *testing.T, env []string, args ...string) string {
	t.Helper()
	tok, err := openSession(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantFail(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("command succeeded, want a failure containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func adminClient(t *testing.T, addr string) triadv1.AdminClient {
	t.Helper()
	return triadv1.NewAdminClient(dialMember(t, addr))
}

func hdr(token string) *triadv1.AdminHeader {
	return &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion, SessionToken: token}
}

// setIdle sets the session idle timeout through a full session.
func setIdle(t *testing.T, c *cluster, d time.Duration) {
	t.Helper()
	if _, err := ctlOn(t, c.members[0].addr, "server", "set", "--idle-timeout", d.String()); err != nil {
		t.Fatal(err)
	}
}

// TestAdminOneFullSessionClusterWide: a full session opened on alpha blocks
// a full connect on charlie (naming the holder and its age); killing alpha
// does not free the lock; an explicit disconnect does, and so does the
// idle timeout.
func TestAdminOneFullSessionClusterWide(t *testing.T) {
	c := startCluster(t)
	c.form()
	a, ch := c.members[0], c.members[2]
	const idle = 5 * time.Second
	setIdle(t, c, idle)

	tok := mustOpen(t, nil, "--server", a.addr, "--mode", "full")
	_, err := openSession(t, nil, "--server", ch.addr, "--mode", "full")
	wantFail(t, err, "full access is already held by", "via alpha", "ago")
	// Restricted sessions are not blocked.
	if _, err := ctlEnv(t, nil, "--server", ch.addr, "--mode", "restricted", "server", "show"); err != nil {
		t.Fatal(err)
	}
	// The token is valid on every member.
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + tok}, "--server", ch.addr, "cluster", "status"); err != nil {
		t.Fatalf("session opened on alpha, used on charlie: %v", err)
	}

	a.kill()
	_, err = openSession(t, nil, "--server", ch.addr, "--mode", "full")
	wantFail(t, err, "full access is already held by", "via alpha")
	// Explicit disconnect, through another member, frees it.
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + tok}, "--server", ch.addr, "disconnect"); err != nil {
		t.Fatal(err)
	}
	tok2 := mustOpen(t, nil, "--server", ch.addr, "--mode", "full")
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + tok2}, "--server", ch.addr, "disconnect"); err != nil {
		t.Fatal(err)
	}

	// Again, but let the idle timeout free it.
	a.start()
	opened := time.Now()
	idleTok := mustOpen(t, nil, "--server", a.addr, "--mode", "full")
	a.kill()
	var freedAfter time.Duration
	waitFor(t, idle+10*time.Second, "full access freed by the idle timeout", func() error {
		tok, err := openSession(t, nil, "--server", ch.addr, "--mode", "full")
		if err != nil {
			if !strings.Contains(err.Error(), "full access is already held") {
				t.Fatalf("unexpected refusal: %v", err)
			}
			return err
		}
		freedAfter = time.Since(opened)
		ctlEnv(t, []string{"TRIAD_SESSION=" + tok}, "--server", ch.addr, "disconnect")
		return nil
	})
	if freedAfter < idle-time.Second {
		t.Fatalf("lock freed after %s, before the idle timeout %s", freedAfter, idle)
	}
	// The idle-closed session's next call says why; the tool does not
	// reconnect by itself.
	_, err = ctlEnv(t, []string{"TRIAD_SESSION=" + idleTok}, "--server", ch.addr, "server", "show")
	wantFail(t, err, "disconnected: the session was idle for more than 5s; connect again")
}

// TestAdminRestrictedCannotEnroll: a restricted session is read-only;
// every write is PERMISSION_DENIED naming full mode.
func TestAdminRestrictedCannotEnroll(t *testing.T) {
	c := startCluster(t)
	c.form()
	lic := c.issue("cad", "--feature", "cad:1:2", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
	_, err := ctlEnv(t, nil, "--server", c.members[1].addr, "--mode", "restricted", "license", "enroll", lic)
	wantFail(t, err, "permission denied", "license enroll needs full mode")

	tok := mustOpen(t, nil, "--server", c.members[1].addr, "--mode", "restricted")
	ac := adminClient(t, c.members[1].addr)
	data, _ := os.ReadFile(lic)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	policy := "none"
	for name, call := range map[string]func() error{
		"license enroll": func() error {
			_, err := ac.LicenseEnroll(ctx, &triadv1.LicenseEnrollRequest{Header: hdr(tok), LicenseFile: data})
			return err
		},
		"server set": func() error {
			_, err := ac.ServerSet(ctx, &triadv1.ServerSetRequest{Header: hdr(tok), RemotePolicy: &policy})
			return err
		},
		"password set": func() error {
			_, err := ac.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: hdr(tok), Which: "full", NewPassword: "x"})
			return err
		},
		"usage release": func() error {
			_, err := ac.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: hdr(tok), LeaseId: 1})
			return err
		},
		"license remove": func() error {
			_, err := ac.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: hdr(tok), Serial: "X"})
			return err
		},
	} {
		st := grpcstatus.Convert(call())
		if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), name+" needs full mode") {
			t.Errorf("%s in a restricted session: %v %q, want PermissionDenied naming full mode", name, st.Code(), st.Message())
		}
	}
	// Reads work.
	if _, err := ac.LicenseList(ctx, &triadv1.LicenseListRequest{Header: hdr(tok)}); err != nil {
		t.Errorf("license list in a restricted session: %v", err)
	}
	// A full session enrolls.
	c.enroll(lic)
}

// TestAdminLocalDisplacesRemote: a local connect through the Unix socket
// takes full access; the displaced session's next call fails with the
// exact message.
func TestAdminLocalDisplacesRemote(t *testing.T) {
	c := startCluster(t)
	c.form()
	sock := filepath.Join(c.members[2].dir, "admin.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket mode %v, want an owner-only (0600) socket", fi.Mode())
	}
	remote := mustOpen(t, nil, "--server", c.members[0].addr, "--mode", "full")
	local := mustOpen(t, nil, "--local", "--data-dir", c.members[2].dir, "--mode", "full")
	for _, m := range []*member{c.members[0], c.members[1]} {
		_, err := ctlEnv(t, []string{"TRIAD_SESSION=" + remote}, "--server", m.addr, "server", "show")
		wantFail(t, err, "disconnected: a local administrator took full access")
	}
	// The local session holds full access now.
	out, err := ctlEnv(t, []string{"TRIAD_SESSION=" + local}, "--local", "--data-dir", c.members[2].dir, "--output", "json", "server", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"local": true`) || !strings.Contains(out, "unix socket") {
		t.Errorf("server show does not list the local session:\n%s", out)
	}
	_, err = openSession(t, nil, "--server", c.members[1].addr, "--mode", "full")
	wantFail(t, err, "full access is already held by local tool on charlie")
	// A second local tool displaces the first one too.
	mustOpen(t, nil, "--local", "--data-dir", c.members[0].dir, "--mode", "full")
	_, err = ctlEnv(t, []string{"TRIAD_SESSION=" + local}, "--local", "--data-dir", c.members[2].dir, "server", "show")
	wantFail(t, err, "disconnected: a local administrator took full access")
}

// TestAdminPasswords: no password asked while none is set; restricted only
// after full; wrong password refused; the restricted password forces
// restricted mode; passwords never reach the logs or the API.
func TestAdminPasswords(t *testing.T) {
	c := startCluster(t)
	c.form()
	srv := c.members[1].addr
	_, err := ctlEnv(t, []string{"TRIAD_NEW_PASSWORD=look-only"}, "--server", srv, "password", "set", "restricted")
	wantFail(t, err, "set the full password first")

	// A session opened while no password was set sets the full password,
	// then cannot change it without the current one.
	early := mustOpen(t, nil, "--server", srv, "--mode", "full")
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + early, "TRIAD_NEW_PASSWORD=Fu11-secret"}, "--server", srv, "password", "set", "full"); err != nil {
		t.Fatal(err)
	}
	_, err = ctlEnv(t, []string{"TRIAD_SESSION=" + early, "TRIAD_NEW_PASSWORD=0ther-secret"}, "--server", srv, "password", "set", "full")
	wantFail(t, err, "the current full password is wrong")
	_, err = ctlEnv(t, []string{"TRIAD_SESSION=" + early, "TRIAD_PASSWORD=wrong", "TRIAD_NEW_PASSWORD=look-only"}, "--server", srv, "password", "set", "restricted")
	wantFail(t, err, "the current full password is wrong")
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + early}, "--server", srv, "disconnect"); err != nil {
		t.Fatal(err)
	}
	// Nothing changed: the first full password still opens full sessions,
	// and no restricted password is set.
	show, err := ctlEnv(t, []string{"TRIAD_PASSWORD=Fu11-secret"}, "--server", srv, "--output", "json", "--mode", "full", "server", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(show, `"restricted_password_set": false`) {
		t.Fatalf("a refused change set the restricted password:\n%s", show)
	}
	_, err = ctlEnv(t, nil, "--server", srv, "--mode", "full", "server", "show")
	wantFail(t, err, "password required")
	_, err = ctlEnv(t, []string{"TRIAD_PASSWORD=wrong"}, "--server", srv, "--mode", "full", "server", "show")
	wantFail(t, err, "wrong password")
	pwFile := c.writeFile("pw", "Fu11-secret\n")
	if _, err := ctlEnv(t, nil, "--server", srv, "--password-file", pwFile, "--mode", "full", "server", "show"); err != nil {
		t.Fatal(err)
	}
	// Only the full password set: connect restricted asks none.
	if _, err := ctlEnv(t, nil, "--server", srv, "--mode", "restricted", "server", "show"); err != nil {
		t.Fatal(err)
	}
	// Changing needs the current full password.
	_, err = ctlEnv(t, []string{"TRIAD_PASSWORD=Fu11-secret", "TRIAD_NEW_PASSWORD=look-only"}, "--server", srv, "password", "set", "restricted")
	if err != nil {
		t.Fatal(err)
	}
	// Both set: restricted connect needs one of them; the restricted one on
	// a full connect forces restricted mode.
	_, err = ctlEnv(t, nil, "--server", srv, "--mode", "restricted", "server", "show")
	wantFail(t, err, "password required")
	out, err := ctlEnv(t, []string{"TRIAD_PASSWORD=look-only"}, "--server", srv, "--output", "json", "--mode", "full", "connect")
	if err != nil || !strings.Contains(out, `"mode": "restricted"`) || !strings.Contains(out, `"forced_restricted": true`) {
		t.Fatalf("full connect with the restricted password: %q %v, want a forced restricted session", out, err)
	}
	_, err = ctlEnv(t, []string{"TRIAD_PASSWORD=look-only"}, "--server", srv, "server", "set", "--statistics", "off")
	wantFail(t, err, "server set needs full mode")

	show, err = ctlEnv(t, []string{"TRIAD_PASSWORD=look-only"}, "--server", srv, "--output", "json", "server", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		for _, secret := range []string{"Fu11-secret", "look-only"} {
			if strings.Contains(m.log(), secret) {
				t.Errorf("member %s logged a password", m.name)
			}
			if strings.Contains(show, secret) {
				t.Errorf("server show returned a password")
			}
		}
	}
	if !strings.Contains(show, `"full_password_set": true`) || strings.Contains(show, "$2a$") {
		t.Errorf("server show should say the password is set and never carry a hash:\n%s", show)
	}
}

// TestAdminRemotePolicy: policy none refuses remote tools once a license
// is enrolled, not before; local tools and the other members keep full
// access; restricted forces restricted mode.
func TestAdminRemotePolicy(t *testing.T) {
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	// Members on their own loopback IPs, so that a tool from 127.0.0.1 is
	// nobody's and a tool from 127.0.0.3 is bravo's host.
	for i, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, fmt.Sprintf("127.0.0.%d", i+2), filepath.Join(c.dir, "vendor.pub"))
		m.start()
		c.members = append(c.members, m)
	}
	c.form()
	a := c.members[0]
	if _, err := ctlOn(t, a.addr, "server", "set", "--remote-policy", "none"); err != nil {
		t.Fatal(err)
	}
	// Not activated yet: remote administration is still allowed.
	if _, err := ctlOn(t, a.addr, "server", "show"); err != nil {
		t.Fatalf("remote tool refused before activation: %v", err)
	}
	c.enroll(c.issue("cad", "--feature", "cad:1:2", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	_, err := ctlOn(t, a.addr, "server", "show")
	wantFail(t, err, "remote administration is denied", `"none"`)
	_, err = ctlOn(t, a.addr, "--mode", "restricted", "usage", "features")
	wantFail(t, err, "remote administration is denied")
	// The other members are always allowed full access.
	out, err := ctlEnv(t, nil, "--server", a.addr, "--source-ip", "127.0.0.3", "--output", "json", "--mode", "full", "connect")
	if err != nil || !strings.Contains(out, `"mode": "full"`) || !strings.Contains(out, "member bravo") {
		t.Fatalf("connect from bravo's address: %q %v, want full access", out, err)
	}
	tok := strings.Split(strings.Split(out, `"session_token": "`)[1], `"`)[0]
	ctlEnv(t, []string{"TRIAD_SESSION=" + tok}, "--server", a.addr, "disconnect")
	// A local tool is not remote.
	if _, err := ctlEnv(t, nil, "--local", "--data-dir", a.dir, "server", "set", "--remote-policy", "restricted"); err != nil {
		t.Fatal(err)
	}
	// Restricted: a remote connect is forced to restricted mode.
	out, err = ctlEnv(t, nil, "--server", a.addr, "--output", "json", "--mode", "full", "connect")
	if err != nil || !strings.Contains(out, `"mode": "restricted"`) || !strings.Contains(out, "policy is restricted") {
		t.Fatalf("remote full connect under policy restricted: %q %v, want forced restricted", out, err)
	}
	_, err = ctlOn(t, a.addr, "server", "set", "--statistics", "off")
	wantFail(t, err, "needs full mode")

	// The policy is checked at connect time only: remote sessions opened
	// under policy full stay usable, even for changes, once it is none.
	if _, err := ctlEnv(t, nil, "--local", "--data-dir", a.dir, "server", "set", "--remote-policy", "full"); err != nil {
		t.Fatal(err)
	}
	full := mustOpen(t, nil, "--server", a.addr, "--mode", "full")
	ro := mustOpen(t, nil, "--server", c.members[2].addr, "--mode", "restricted")
	asFull := []string{"TRIAD_SESSION=" + full}
	if _, err := ctlEnv(t, asFull, "--server", a.addr, "server", "set", "--remote-policy", "none"); err != nil {
		t.Fatal(err)
	}
	_, err = ctlOn(t, c.members[2].addr, "--mode", "restricted", "server", "show")
	wantFail(t, err, "remote administration is denied")
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + ro}, "--server", c.members[2].addr, "usage", "features"); err != nil {
		t.Fatalf("restricted session opened before the policy change: %v", err)
	}
	if _, err := ctlEnv(t, asFull, "--server", a.addr, "server", "set", "--statistics", "off"); err != nil {
		t.Fatalf("full session opened before the policy change: %v", err)
	}

	// Activation is sticky: with the only license removed, the policy
	// still applies.
	var lics []struct{ Serial string }
	out, err = ctlEnv(t, asFull, "--server", a.addr, "--output", "json", "license", "list")
	if err != nil || json.Unmarshal([]byte(out), &lics) != nil || len(lics) != 1 {
		t.Fatalf("license list: %q %v", out, err)
	}
	if _, err := ctlEnv(t, asFull, "--server", a.addr, "license", "remove", lics[0].Serial); err != nil {
		t.Fatal(err)
	}
	out, err = ctlEnv(t, asFull, "--server", a.addr, "--output", "json", "license", "list")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("license list after removing the only license: %q %v", out, err)
	}
	out, err = ctlEnv(t, asFull, "--server", a.addr, "--output", "json", "server", "show")
	if err != nil || !strings.Contains(out, `"activated": true`) {
		t.Fatalf("server show after removing the only license: %v, want activated:\n%s", err, out)
	}
	_, err = ctlOn(t, a.addr, "--mode", "restricted", "server", "show")
	wantFail(t, err, "remote administration is denied")
	if _, err := ctlEnv(t, asFull, "--server", a.addr, "disconnect"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminVersionCheck: a triadctl older than the server's admin protocol
// is refused with both versions; a session token is needed for every call.
func TestAdminVersionCheck(t *testing.T) {
	m := newMember(t, "solo", "")
	ac := adminClient(t, m.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ac.Connect(ctx, &triadv1.ConnectRequest{Header: &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion - 1, ToolVersion: "0.1.0"}, Mode: "full"})
	st := grpcstatus.Convert(err)
	want := fmt.Sprintf("triadctl 0.1.0 speaks admin protocol %d, older than this server's (%d", admin.ProtocolVersion-1, admin.ProtocolVersion)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), want) || !strings.Contains(st.Message(), "upgrade triadctl") {
		t.Fatalf("old triadctl: %v %q, want FailedPrecondition containing %q", st.Code(), st.Message(), want)
	}
	_, err = ac.ServerShow(ctx, &triadv1.ServerShowRequest{Header: hdr("")})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("server show without a session: %v, want Unauthenticated", err)
	}
	_, err = ac.ServerShow(ctx, &triadv1.ServerShowRequest{Header: hdr("made-up")})
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("server show with a made-up token: %v, want Unauthenticated", err)
	}
}

// TestAdminFormationEndsEarlySessions: before formation a member keeps
// sessions itself, with the same rules (one full session, local priority);
// formation ends them, the next call saying so, and full access is then the
// replicated state's.
func TestAdminFormationEndsEarlySessions(t *testing.T) {
	c := startCluster(t)
	a := c.members[0]
	remote := mustOpen(t, nil, "--server", a.addr, "--mode", "full")
	_, err := openSession(t, nil, "--server", a.addr, "--mode", "full")
	wantFail(t, err, "full access is already held by remote tool", "via alpha")
	if _, err := ctlEnv(t, nil, "--server", a.addr, "--mode", "restricted", "server", "show"); err != nil {
		t.Fatalf("restricted alongside a full session: %v", err)
	}
	asLocal := func(tok string) []string { return []string{"TRIAD_SESSION=" + tok} }
	local := mustOpen(t, nil, "--local", "--data-dir", a.dir, "--mode", "full")
	_, err = ctlEnv(t, asLocal(remote), "--server", a.addr, "server", "show")
	wantFail(t, err, "disconnected: a local administrator took full access")

	// The local tool forms the cluster in its session; that session then
	// ends: the tool must connect again.
	if _, err := ctlEnv(t, asLocal(local), "--local", "--data-dir", a.dir, "cluster", "create", "--members", c.servers()); err != nil {
		t.Fatal(err)
	}
	_, err = ctlEnv(t, asLocal(local), "--local", "--data-dir", a.dir, "server", "show")
	wantFail(t, err, "disconnected: the cluster was formed; connect again")
	out, err := ctlEnv(t, nil, "--server", a.addr, "--output", "json", "server", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, `"member_only": true`) {
		t.Errorf("a session opened before formation is still listed:\n%s", out)
	}
	// A full session is now replicated: one opened on alpha blocks one on
	// charlie.
	tok := mustOpen(t, nil, "--server", a.addr, "--mode", "full")
	_, err = openSession(t, nil, "--server", c.members[2].addr, "--mode", "full")
	wantFail(t, err, "full access is already held by remote tool", "via alpha")
	if _, err := ctlEnv(t, asLocal(tok), "--server", a.addr, "disconnect"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminCompletionScriptInBash: the script of `triadctl completion bash`
// completes commands and subcommands in a real bash.
func TestAdminCompletionScriptInBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash not found: %v (the completion script is for bash)", err)
	}
	ctl := filepath.Join(binDir, "triadctl")
	script, err := ctlEnv(t, nil, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "triadctl.bash")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{ctl, "us"}, []string{"usage"}},
		{[]string{ctl, "usage", ""}, []string{"features", "users", "leases", "denials", "release", "recycle"}},
		{[]string{ctl, "completion", ""}, []string{"bash", "zsh"}},
	} {
		quoted := make([]string, len(tc.words))
		for i, w := range tc.words {
			quoted[i] = "'" + w + "'"
		}
		prog := fmt.Sprintf("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _triadctl_complete; printf '%%s\\n' \"${COMPREPLY[@]}\"",
			path, strings.Join(quoted, " "), len(tc.words)-1)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bash, "--norc", "-c", prog).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%v: %v: %s", tc.words[1:], err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q: %v lacks %q", tc.words[1:], got, w)
			}
		}
	}
}
