package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/failover"
	"github.com/triadlm/triad/server/pki"
)

// licenseSerials is what `license list` shows, for "changed nothing".
func licenseSerials(t *testing.T, c *cluster) string {
	t.Helper()
	var list []struct{ Serial, State string }
	ctlJSON(t, c.servers(), &list, "license", "list")
	var out []string
	for _, l := range list {
		out = append(out, l.Serial+"="+l.State)
	}
	return strings.Join(out, ",")
}

// The attacks of the security issue, replayed against real members: the
// member-only Peer service is not on the licensing port (not even for an
// unformed member's Bootstrap), and each call is refused as unknown,
// changing nothing.
func TestAttackPeerServiceOnLicensingPort(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Unformed: a forged bootstrap through the public port.
	p := peerpb.NewPeerClient(dialMember(t, c.members[0].addr))
	fc := &fsmpb.FormCluster{Mode: "standalone", Members: []*fsmpb.Member{{Name: "alpha", GrpcAddress: c.members[0].addr, RaftAddress: c.members[0].raftAddr}}}
	if _, err := p.Bootstrap(ctx, &peerpb.BootstrapRequest{PeerProtocolVersion: 1, Cluster: fc}); grpcstatus.Code(err) != codes.Unimplemented {
		t.Fatalf("Bootstrap on the licensing port: %v, want Unimplemented", err)
	}
	if _, err := p.Info(ctx, &peerpb.InfoRequest{}); grpcstatus.Code(err) != codes.Unimplemented {
		t.Fatalf("Info on the licensing port: %v, want Unimplemented", err)
	}
	var show struct{ Mode string }
	ctlJSON(t, c.members[0].addr, &show, "server", "show")
	if show.Mode != "unconfigured" {
		t.Fatalf("mode after a forged bootstrap = %q", show.Mode)
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:2", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	before := licenseSerials(t, c)
	forged := &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: &fsmpb.License{
		Serial: "FORGED", BindingMode: "failover", ComputerIds: c.computerIDs(), ValidAfterMs: 1, ValidUntilMs: 1 << 60,
		Features: []*fsmpb.Feature{{Name: "cad", Version: 1, Count: 1000000}}}}}}
	for _, m := range c.members {
		p := peerpb.NewPeerClient(dialMember(t, m.addr))
		calls := map[string]error{}
		_, calls["Info"] = p.Info(ctx, &peerpb.InfoRequest{})
		_, calls["Ping"] = p.Ping(ctx, &peerpb.PingRequest{From: "mallory"})
		_, calls["ForwardCommand"] = p.ForwardCommand(ctx, &peerpb.ForwardCommandRequest{Command: forged})
		_, calls["Forward"] = p.Forward(ctx, &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{1, 2, 3}}}}}}})
		calls["ForwardStream"] = forwardStreamErr(ctx, p, forgedGrant())
		for name, err := range calls {
			if grpcstatus.Code(err) != codes.Unimplemented {
				t.Errorf("Peer.%s on %s's licensing port: %v, want Unimplemented", name, m.name, err)
			}
		}
	}
	if after := licenseSerials(t, c); after != before {
		t.Fatalf("licenses changed by refused calls: %s -> %s", before, after)
	}
	if rows := c.usage(c.servers()); len(rows) == 0 || rows[0].InUse != 0 {
		t.Fatalf("seats in use after refused forwards: %+v", rows)
	}
}

// The failover port admits only the cluster's members: a certificate of
// another CA, a client certificate of the right CA, no certificate,
// plaintext and a CA-signed member certificate naming no member are all
// refused. Even a member's own certificate (a compromised member) cannot
// enroll an unsigned, re-signed or altered license past the edge: every
// member's Apply verifies it against the replicated vendor keys.
func TestAttackFailoverPort(t *testing.T) {
	t.Parallel()
	c := formedWithLicense(t, 2)
	before := licenseSerials(t, c)
	leader := c.leader(c.members[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	otherCA, err := pki.NewCA("attacker CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if err := otherCA.Save(otherDir); err != nil {
		t.Fatal(err)
	}
	credsOf := func(ca *pki.CA, caFile string, kind pki.Kind, name string) *pki.Creds {
		is, err := ca.Issue(kind, name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cf, kf, err := pki.WriteIssued(t.TempDir(), name, is)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := pki.LoadCreds(pki.Files{CA: caFile, Cert: cf, Key: kf})
		if err != nil {
			t.Fatal(err)
		}
		return cr
	}
	noCert, err := pki.LoadCreds(pki.Files{CA: testCAFile})
	if err != nil {
		t.Fatal(err)
	}
	attackers := map[string]*pki.Creds{
		"another CA's member certificate":   credsOf(otherCA, filepath.Join(otherDir, pki.CACertFile), pki.Member, "alpha"),
		"a client certificate of the CA":    credsOf(testCA, testCAFile, pki.Client, "alpha"),
		"a member certificate of no member": credsOf(testCA, testCAFile, pki.Member, "mallory"),
		"no certificate":                    noCert,
		"plaintext (no TLS)":                nil,
	}
	unsigned := &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: &fsmpb.License{
		Serial: "FORGED", BindingMode: "failover", ComputerIds: c.computerIDs(), ValidAfterMs: 1, ValidUntilMs: 1 << 60,
		Features: []*fsmpb.Feature{{Name: "cad", Version: 1, Count: 1000000}}}}}}
	for name, creds := range attackers {
		for _, m := range c.members {
			conn, err := failover.DialPeer(m.raftAddr, creds)
			if err != nil {
				t.Fatal(err)
			}
			p := peerpb.NewPeerClient(conn)
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			_, errInfo := p.Info(cctx, &peerpb.InfoRequest{})
			_, errFwd := p.ForwardCommand(cctx, &peerpb.ForwardCommandRequest{Command: unsigned})
			errStream := forwardStreamErr(cctx, p, forgedGrant())
			ccancel()
			conn.Close()
			if errInfo == nil || errFwd == nil || errStream == nil {
				t.Errorf("%s on %s's failover port: Info %v, ForwardCommand %v, ForwardStream %v; want all refused", name, m.name, errInfo, errFwd, errStream)
			}
		}
	}

	if rows := c.usage(c.servers()); len(rows) == 0 || rows[0].InUse != 0 {
		t.Fatalf("seats in use after refused forwards: %+v", rows)
	}

	// A compromised member (its own certificate) forges enrollments under a
	// live full session: Apply refuses each on every member.
	vendor := filepath.Join(c.dir, "rogue")
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", vendor); err != nil {
		t.Fatal(err)
	}
	resigned := c.issueWith("resigned", vendor+".key", strings.Join(c.computerIDs(), ","), "--feature", "cad:1:1000000", "--valid-until", "2099-01-01")
	genuine := c.issue("genuine", "--feature", "cad:1:1", "--valid-until", "2099-01-01")
	licOf := func(path string) *fsmpb.License {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := license.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return fsm.LicenseFromFile(f, raw)
	}
	tampered := licOf(genuine)
	tampered.Features[0].Count = 1000000 // the file says 1
	token := mustOpen(t, nil, "--server", c.members[0].addr, "--mode", "full")
	session := admin.TokenID(token)
	forgeries := map[string]*fsmpb.License{
		"unsigned":              unsigned.GetEnrollLicense().GetLicense(),
		"signed by another key": licOf(resigned),
		"altered after signing": tampered,
	}
	insider := peerAs(t, leader.raftAddr, "alpha")
	for name, lic := range forgeries {
		cmd := &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: lic, SessionId: session}}}
		resp, err := insider.ForwardCommand(ctx, &peerpb.ForwardCommandRequest{Command: cmd})
		if err == nil && resp.GetResult().GetCode() == fsmpb.Code_OK {
			t.Errorf("forged enrollment (%s) was applied", name)
		}
	}
	if _, err := ctlEnv(t, []string{"TRIAD_SESSION=" + token}, "--server", c.members[0].addr, "disconnect"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		var list []struct{ Serial string }
		ctlJSON(t, m.addr, &list, "license", "list")
		if len(list) != 1 {
			t.Fatalf("%s lists %d licenses after the attacks, want the 1 enrolled: %+v", m.name, len(list), list)
		}
	}
	if after := licenseSerials(t, c); after != before {
		t.Fatalf("licenses changed by refused attacks: %s -> %s", before, after)
	}
	// The cluster is still whole: the members' own links are up.
	if s, err := c.status(c.members[1]); err != nil || s.Status != "operational" {
		t.Fatalf("status after the attacks: %+v %v", s, err)
	}
}

// The licensing port is TLS: a plaintext client, a client trusting
// another CA and one trusting only the system roots get nothing; a member
// that asks for client certificates (--tls-client-ca) refuses a tool
// without one, or with one of another CA, and serves a tool with one.
func TestAttackLicensingPortTLS(t *testing.T) {
	// Not parallel: it sets TRIAD_CERT/TRIAD_KEY for the tools it runs.
	dir := t.TempDir()
	m := prepareMember(t, "alpha", "127.0.0.1", "")
	m.extra = []string{"--tls-client-ca", testCAFile, "--http-tls"}
	// start() checks readiness with `server show`, which now needs a
	// client certificate: give triadctl one through the environment.
	cf, kf := issueCert(t, pki.Client, "ops")
	t.Setenv("TRIAD_CERT", cf)
	t.Setenv("TRIAD_KEY", kf)
	m.start()
	if _, err := ctlOn(t, m.addr, "server", "show"); err != nil {
		t.Fatalf("a tool with a client certificate: %v", err)
	}
	// --http-tls: the status port answers HTTPS verified by the cluster CA
	// (no client certificate asked there) and nothing in plaintext.
	hc := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(t)}}
	resp, err := hc.Get("https://" + m.httpAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("https /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, _ := getURL(t, "http://"+m.httpAddr+"/healthz"); code == 200 {
		t.Fatal("the status port answered plaintext HTTP with --http-tls")
	}
	_, err = ctlEnv(t, []string{"TRIAD_CERT=", "TRIAD_KEY="}, "--server", m.addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "member unreachable")
	otherCA, err := pki.NewCA("attacker CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	is, err := otherCA.Issue(pki.Client, "ops", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ocf, okf, err := pki.WriteIssued(dir, "foreign-ops", is)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctlEnv(t, []string{"TRIAD_CERT=" + ocf, "TRIAD_KEY=" + okf}, "--server", m.addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "member unreachable")
	_, err = ctlEnv(t, append([]string{"TRIAD_CERT=", "TRIAD_KEY="}, insecureEnv...), "--server", m.addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "member unreachable")
	_, err = ctlEnv(t, []string{"TRIAD_CA="}, "--server", m.addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "certificate")
	ocaFile := filepath.Join(dir, "other-ca.crt")
	if err := os.WriteFile(ocaFile, otherCA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ctlEnv(t, []string{"TRIAD_CA=" + ocaFile}, "--server", m.addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "certificate")

	// Raw stubs in plaintext against the TLS port.
	conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := triadv1.NewAdminClient(conn).Connect(ctx, &triadv1.ConnectRequest{Mode: "full"}); err == nil {
		t.Fatal("a plaintext Connect got an answer from a TLS member")
	}
	// TLS without a client certificate, raw.
	nc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: clientTLS(t).RootCAs})))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := triadv1.NewAdminClient(nc).Discover(ctx, &triadv1.DiscoverRequest{}); err == nil {
		t.Fatal("a client without a certificate got an answer from a member that requires one")
	}
}

// --insecure keeps working, explicitly: a member refuses to start without
// TLS unless asked; three --insecure members form, enroll and lease with
// plaintext tools; status says so (field and alarm); a TLS tool is refused.
func TestInsecureClusterWorksWhenAskedFor(t *testing.T) {
	t.Parallel()
	// Neither TLS files nor --insecure: refused at start, saying what to do.
	out, err := exec.Command(filepath.Join(binDir, "triadd"), "--name", "x", "--data-dir", t.TempDir(),
		"--listen", "127.0.0.1:0", "--raft-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TLS is not configured") || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("triadd without TLS: %v: %s", err, out)
	}

	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, "127.0.0.1", filepath.Join(c.dir, "vendor.pub"))
		m.insecure = true
		m.start()
		c.members = append(c.members, m)
	}
	ctl := func(args ...string) (string, error) {
		return ctlEnv(t, insecureEnv, append([]string{"--server", c.servers()}, args...)...)
	}
	if _, err := ctlEnv(t, insecureEnv, "--server", c.members[0].addr, "cluster", "create", "--members", c.servers()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range c.members {
		out, err := ctlEnv(t, insecureEnv, "--server", m.addr, "--output", "json", "server", "show")
		if err != nil {
			t.Fatal(err)
		}
		var show struct {
			ComputerID string `json:"computer_id"`
		}
		json.Unmarshal([]byte(out), &show)
		ids = append(ids, show.ComputerID)
	}
	lic := c.issueWith("cad", c.vendorKey(), strings.Join(ids, ","), "--feature", "cad:1:1", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"))
	if _, err := ctl("license", "enroll", lic); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl("checkout", "--feature", "cad", "--hold", "100ms"); err != nil {
		t.Fatalf("checkout over plaintext: %v", err)
	}
	stOut, err := ctl("--output", "json", "cluster", "status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status   string `json:"status"`
		Insecure bool   `json:"insecure"`
		Alarms   []struct {
			Kind string `json:"kind"`
		} `json:"alarms"`
	}
	if err := json.Unmarshal([]byte(stOut), &st); err != nil {
		t.Fatal(err)
	}
	alarm := false
	for _, a := range st.Alarms {
		alarm = alarm || a.Kind == "insecure_transport"
	}
	if !st.Insecure || !alarm {
		t.Errorf("cluster status of an --insecure member: insecure=%v, insecure_transport alarm=%v", st.Insecure, alarm)
	}
	if code, body := getURL(t, "http://"+c.members[1].httpAddr+"/v1/status"); code != 200 || !strings.Contains(body, `"insecure": true`) {
		t.Errorf("/v1/status of an --insecure member: %d %s", code, body)
	}
	if !strings.Contains(c.members[0].log(), "INSECURE") {
		t.Error("the startup log does not say the member runs without TLS")
	}
	_, err = ctlOn(t, c.members[0].addr, "--timeout", "5s", "server", "show")
	wantFail(t, err, "member unreachable")
}

// forgedGrant is a forwarded batch that would take both seats of cad.
func forgedGrant() *peerpb.ForwardRequest {
	return &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{
		RequestId: "forged", ClientId: "mallory", Feature: "cad", Version: 1, Count: 2, TtlMs: 60000}}}}}}
}

// forwardStreamErr sends req on a Peer.ForwardStream and returns why it
// was refused: nil if an answer came back (the stream was served).
func forwardStreamErr(ctx context.Context, p peerpb.PeerClient, req *peerpb.ForwardRequest) error {
	s, err := p.ForwardStream(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&peerpb.ForwardStreamRequest{Id: 1, Forward: req}); err != nil {
		_, err = s.Recv() // the stream's own error
		return err
	}
	_, err = s.Recv()
	return err
}
