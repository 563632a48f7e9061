// Package integration runs real triadd processes on loopback and checks the
// cluster's behaviour from outside: formation, leasing, failover, restart.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/failover"
	"github.com/triadlm/triad/server/pki"
)

var binDir string

// testCA is the cluster CA of every test cluster; its certificate is in
// $TRIAD_CA, which triadctl and cmd/triad-example read, so every tool the
// tests run verifies the members' TLS certificates.
var (
	testCA     *pki.CA
	testCAFile string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "triad-bin-")
	if err != nil {
		panic(err)
	}
	if testCA, err = pki.NewCA("Triad test CA", 24*time.Hour); err != nil {
		panic(err)
	}
	testCAFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(testCAFile, testCA.CertPEM(), 0o644); err != nil {
		panic(err)
	}
	os.Setenv("TRIAD_CA", testCAFile)
	os.Unsetenv("TRIAD_INSECURE")
	for _, name := range []string{"triadd", "triadctl"} {
		cmd := exec.Command("go", "build", "-race", "-o", filepath.Join(dir, name), "../cmd/"+name)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", name, ":", err)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// member is one triadd process. Its first start listens on port 0 of its
// IP and reads the ports it got from --addr-file (no race for a port a
// test picked and released); a restart reuses them, as a real member's
// addresses are fixed once the cluster is formed.
type member struct {
	t                        *testing.T
	name, dir                string
	addr, raftAddr, httpAddr string
	trust                    string
	extra                    []string
	cmd                      *exec.Cmd
	exited                   chan struct{}
	// TLS material (member certificate of testCA); insecure runs the
	// member with --insecure instead.
	certFile, keyFile string
	insecure          bool
	// noAnswerWait: start returns once the member listens, without
	// waiting for it to answer triadctl (a member expected to refuse).
	noAnswerWait bool
}

func newMember(t *testing.T, name, trust string, extra ...string) *member {
	m := prepareMember(t, name, "127.0.0.1", trust, extra...)
	m.start()
	return m
}

// prepareMember makes a member on ip, with a member certificate naming
// it, without starting it; its ports are chosen when it starts.
func prepareMember(t *testing.T, name, ip, trust string, extra ...string) *member {
	t.Helper()
	any := net.JoinHostPort(ip, "0")
	m := &member{t: t, name: name, dir: t.TempDir(), addr: any, raftAddr: any, httpAddr: any, trust: trust, extra: extra}
	m.certFile, m.keyFile = issueCert(t, pki.Member, name, ip, "127.0.0.1", "localhost")
	t.Cleanup(m.kill)
	return m
}

// issueCert issues a certificate of testCA and returns its files.
func issueCert(t *testing.T, kind pki.Kind, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	is, err := testCA.Issue(kind, name, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = pki.WriteIssued(t.TempDir(), name, is)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// insecureEnv makes triadctl talk plaintext (members run with --insecure).
var insecureEnv = []string{"TRIAD_CA=", "TRIAD_INSECURE=1"}

func (m *member) addrFile() string { return filepath.Join(m.dir, "addrs.json") }

// args is the member's triadd command line.
func (m *member) args() []string {
	args := []string{"--name", m.name, "--data-dir", m.dir, "--listen", m.addr, "--raft-listen", m.raftAddr,
		"--http-listen", m.httpAddr, "--log-file", filepath.Join(m.dir, "triadd.log"), "--addr-file", m.addrFile()}
	if m.trust != "" {
		args = append(args, "--trust", m.trust)
	}
	if m.insecure {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--tls-ca", testCAFile, "--tls-cert", m.certFile, "--tls-key", m.keyFile)
	}
	return append(args, m.extra...)
}

func (m *member) start() {
	m.t.Helper()
	os.Remove(m.addrFile())
	m.cmd = exec.Command(filepath.Join(binDir, "triadd"), m.args()...)
	// A test binary that dies (timeout panic) takes its members with it.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	m.cmd.Stderr = &stderr
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func() { m.cmd.Wait(); close(m.exited) }()
	waitFor(m.t, 20*time.Second, "member "+m.name+" listening", func() error {
		select {
		case <-m.exited:
			return fmt.Errorf("triadd exited: %s", stderr.String())
		default:
		}
		b, err := os.ReadFile(m.addrFile())
		if err != nil {
			return err
		}
		var a struct{ Listen, Raft, HTTP string }
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		m.addr, m.raftAddr, m.httpAddr = a.Listen, a.Raft, a.HTTP
		return nil
	})
	if m.noAnswerWait {
		return
	}
	waitFor(m.t, 20*time.Second, "member "+m.name+" answering", func() error {
		if m.insecure {
			_, err := ctlEnv(m.t, insecureEnv, "--server", m.addr, "server", "show")
			return err
		}
		_, err := ctlOn(m.t, m.addr, "server", "show")
		return err
	})
}

// kill sends SIGKILL and waits for the process to go.
func (m *member) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// stop sends SIGTERM (graceful shutdown) and waits.
func (m *member) stop() {
	m.t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		m.t.Fatalf("member %s did not stop within 20 s after SIGTERM", m.name)
	}
	m.cmd = nil
}

func (m *member) log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "triadd.log"))
	return string(b)
}

// ctlOn runs triadctl against servers and returns stdout, or an error
// carrying stderr.
func ctlOn(t *testing.T, servers string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadctl"), append([]string{"--server", servers}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("triadctl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func ctlJSON(t *testing.T, servers string, v any, args ...string) {
	t.Helper()
	out, err := ctlOn(t, servers, append([]string{"--output", "json"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("triadctl %v: bad JSON %q: %v", args, out, err)
	}
}

// waitFor polls f until it succeeds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cluster is three formed members with a trusted vendor key.
type cluster struct {
	t       *testing.T
	dir     string
	members []*member
}

func (c *cluster) servers() string {
	var s []string
	for _, m := range c.members {
		s = append(s, m.addr)
	}
	return strings.Join(s, ",")
}

func (c *cluster) vendorKey() string { return filepath.Join(c.dir, "vendor.key") }

// startCluster starts three unconfigured members trusting a fresh vendor key.
func startCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, filepath.Join(c.dir, "vendor.pub")))
	}
	return c
}

// form forms the cluster through the first member.
func (c *cluster) form() {
	c.t.Helper()
	if _, err := ctlOn(c.t, c.members[0].addr, "cluster", "create", "--members", c.servers()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) computerIDs() []string {
	var ids []string
	for _, m := range c.members {
		var show struct {
			ComputerID string `json:"computer_id"`
		}
		ctlJSON(c.t, m.addr, &show, "server", "show")
		ids = append(ids, show.ComputerID)
	}
	return ids
}

// issue writes a license for this cluster and returns its path.
func (c *cluster) issue(name string, extra ...string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name+".lic")
	args := append([]string{"vendor", "issue", "--key", c.vendorKey(), "--customer", "Test Co",
		"--computer-ids", strings.Join(c.computerIDs(), ","), "--out", path}, extra...)
	if _, err := ctlOn(c.t, "127.0.0.1:1", args...); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// enroll enrolls through a follower-or-leader member and checks the answer
// already reflects the enrolled license (read your write).
func (c *cluster) enroll(path string) {
	c.t.Helper()
	var info struct{ Serial, State string }
	ctlJSON(c.t, c.members[2].addr, &info, "license", "enroll", path)
	if info.Serial == "" || info.State != "valid" {
		c.t.Fatalf("enroll answered %+v, want a valid license", info)
	}
}

// formedWithLicense forms a cluster and enrolls seats of feature "cad" v1.
func formedWithLicense(t *testing.T, seats int) *cluster {
	c := startCluster(t)
	c.form()
	c.enroll(c.issue("cad", "--feature", fmt.Sprintf("cad:1:%d", seats), "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	return c
}

type status struct {
	Status  string `json:"status"`
	Leader  string `json:"leader"`
	Mode    string `json:"mode"`
	Member  string `json:"member"`
	Members []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		Role    string `json:"role"`
	} `json:"members"`
	Links []struct {
		A     string `json:"a"`
		B     string `json:"b"`
		State string `json:"state"`
	} `json:"links"`
	CommitIndex  json.Number `json:"commit_index"`
	AppliedIndex json.Number `json:"applied_index"`
}

// status is m's `cluster status`; its exit status 1 or 2 (partially or
// not operational) is not an error here, the word says it.
func (c *cluster) status(m *member) (status, error) {
	var s status
	out, _, err := ctlStatus(c.t, m.addr, "--output", "json", "--timeout", "3s")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal([]byte(out), &s)
}

// ctlStatus runs `triadctl cluster status` and returns its stdout and exit
// status; err only when it could not run or exited with 3 or more.
func ctlStatus(t *testing.T, servers string, args ...string) (string, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadctl"), append(append([]string{"--server", servers}, args...), "cluster", "status")...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState == nil {
		return "", -1, fmt.Errorf("triadctl cluster status: %v", err)
	}
	code := cmd.ProcessState.ExitCode()
	if err != nil && (code < 1 || code > 2) {
		return out.String(), code, fmt.Errorf("triadctl cluster status: %v: %s", err, errb.String())
	}
	return out.String(), code, nil
}

func (c *cluster) member(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %q", name)
	return nil
}

// leader waits until m reports a leader and returns it.
func (c *cluster) leader(m *member) *member {
	c.t.Helper()
	var name string
	waitFor(c.t, 10*time.Second, "a leader", func() error {
		s, err := c.status(m)
		if err != nil {
			return err
		}
		if s.Leader == "" {
			return fmt.Errorf("no leader yet")
		}
		name = s.Leader
		return nil
	})
	return c.member(name)
}

// newLeader is the leader m follows once it has given up on old (a
// killed or cut-off leader): right after the kill a survivor still names
// the old leader until failure detection (5 s) runs its course.
func (c *cluster) newLeader(m, old *member) *member {
	c.t.Helper()
	var name string
	waitFor(c.t, 30*time.Second, "a leader other than "+old.name+" on "+m.name, func() error {
		s, err := c.status(m)
		if err != nil {
			return err
		}
		if s.Leader == "" || s.Leader == old.name {
			return fmt.Errorf("leader %q", s.Leader)
		}
		name = s.Leader
		return nil
	})
	return c.member(name)
}

// licensing is a raw gRPC Licensing client to one member.
func licensing(t *testing.T, addr string) triadv1.LicensingClient {
	return triadv1.NewLicensingClient(dialMember(t, addr))
}

// dialMember is a raw gRPC connection to a member's licensing port that
// verifies its certificate against the test CA.
func dialMember(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// clientTLS trusts the test CA, like a client given --ca.
func clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := client.TLSConfig(testCAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tlsOption makes a client library instance verify the test CA.
func tlsOption(t *testing.T) client.Option { return client.WithTLS(clientTLS(t)) }

type usageRow struct {
	Feature         string  `json:"feature"`
	Version         uint32  `json:"version"`
	Capacity        uint32  `json:"capacity"`
	InUse           uint32  `json:"in_use"`
	Model           string  `json:"model"`
	PoolSeconds     float64 `json:"pool_seconds"`
	PoolUsedSeconds float64 `json:"pool_used_seconds"`
}

func (c *cluster) usage(servers string) []usageRow {
	var rows []usageRow
	ctlJSON(c.t, servers, &rows, "usage", "features", "--consistent")
	return rows
}

// issueWith signs a license with any key for any computer IDs.
func (c *cluster) issueWith(name, key, ids string, extra ...string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name+".lic")
	args := append([]string{"vendor", "issue", "--key", key, "--customer", "Test Co", "--computer-ids", ids, "--out", path}, extra...)
	if _, err := ctlOn(c.t, "127.0.0.1:1", args...); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) writeFile(name, content string) string {
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// peerAs is a raw Peer client on a member's failover port, presenting a
// member certificate of the test CA named name (as a member would).
func peerAs(t *testing.T, failoverAddr, name string) peerpb.PeerClient {
	t.Helper()
	certFile, keyFile := issueCert(t, pki.Member, name, "127.0.0.1")
	creds, err := pki.LoadCreds(pki.Files{CA: testCAFile, Cert: certFile, Key: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := failover.DialPeer(failoverAddr, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return peerpb.NewPeerClient(conn)
}

// waitHistoryStarted waits until m serves the usage history: the leader
// has committed StartHistory, so every member applies format 4 and Apply
// gives this round's answers (the "can never fit" refusal among them).
func waitHistoryStarted(t *testing.T, m *member) {
	t.Helper()
	waitFor(t, 30*time.Second, "the usage history started (every member on format 4)", func() error {
		code, body, err := historyGet(m, "compliance", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
}
