package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

func newClient(t *testing.T, servers string) *client.Client {
	t.Helper()
	cl, err := client.New(strings.Split(servers, ","), tlsOption(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestFormCheckoutToCapacity(t *testing.T) {
	c := formedWithLicense(t, 5)

	var show struct {
		Name, Mode string
		ComputerID string `json:"computer_id"`
	}
	ctlJSON(t, c.members[1].addr, &show, "server", "show")
	if show.Name != "bravo" || show.Mode != "failover" || !strings.HasPrefix(show.ComputerID, "TRD-") {
		t.Fatalf("server show = %+v, want bravo / failover / a computer ID", show)
	}
	waitFor(t, 10*time.Second, "cluster status operational with three up links", func() error {
		s, err := c.status(c.members[2])
		if err != nil {
			return err
		}
		up := 0
		for _, l := range s.Links {
			if l.State == "up" {
				up++
			}
		}
		if s.Status != "operational" || s.Leader == "" || len(s.Members) != 3 || len(s.Links) != 3 || up != 3 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	// Every member's `cluster status --output json` names the three members
	// at the addresses they were formed with, one leader and two followers,
	// and the three links with their ends.
	waitFor(t, 10*time.Second, "every member reports one leader, two followers, three links up", func() error {
		for _, m := range c.members {
			s, err := c.status(m)
			if err != nil {
				return err
			}
			if err := checkStatusMembers(c, s); err != nil {
				return fmt.Errorf("%s: %v", m.name, err)
			}
		}
		return nil
	})

	cl := newClient(t, c.servers())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := map[uint64]bool{}
	for i := 0; i < 5; i++ {
		l, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
		if err != nil {
			t.Fatalf("checkout %d: %v", i, err)
		}
		ids[l.ID()] = true
	}
	if len(ids) != 5 {
		t.Fatalf("lease ids %v: want 5 distinct", ids)
	}
	_, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
	if !errors.Is(err, client.ErrNoSeat) || grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("sixth checkout: got %v, want RESOURCE_EXHAUSTED", err)
	}
	if !strings.Contains(err.Error(), "no seat left for cad v 1 (5 of 5 in use)") && !strings.Contains(err.Error(), "no seat left for cad v1 (5 of 5 in use)") {
		t.Errorf("denial message %q does not say which feature and how many seats", err)
	}
	// The CLI says the same and exits non-zero.
	if _, err := ctlOn(t, c.servers(), "checkout", "--feature", "cad", "--hold", "1s"); err == nil || !strings.Contains(err.Error(), "no seat left") {
		t.Fatalf("triadctl checkout over capacity: %v", err)
	}
	// Every member reports the same usage.
	for _, m := range c.members {
		rows := c.usage(m.addr)
		if len(rows) != 1 || rows[0].Feature != "cad" || rows[0].Capacity != 5 || rows[0].InUse != 5 {
			t.Fatalf("usage on %s = %+v, want cad 5/5", m.name, rows)
		}
	}
	var lic []struct {
		Serial string
		State  string
	}
	ctlJSON(t, c.servers(), &lic, "license", "list")
	if len(lic) != 1 || lic[0].State != "valid" {
		t.Fatalf("license list = %+v", lic)
	}
	// Unknown feature: NOT_FOUND.
	_, err = cl.Checkout(ctx, client.CheckoutRequest{Feature: "nope"})
	if grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("unknown feature: %v, want NOT_FOUND", err)
	}

	// `server set --isolation-minutes` through one member reaches every
	// member's membership monitor (each logs the delay it now uses).
	if _, err := ctlOn(t, c.members[1].addr, "server", "set", "--isolation-minutes", "7"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "isolation delay applied on every member", func() error {
		for _, m := range c.members {
			if !slices.ContainsFunc(strings.Split(m.log(), "\n"), func(line string) bool {
				return strings.Contains(line, "isolation notice delay set from the cluster settings") && strings.Contains(line, `"minutes":7`)
			}) {
				return fmt.Errorf("%s has not applied isolation minutes 7", m.name)
			}
		}
		return nil
	})
}

// checkStatusMembers checks the members[] and links[] of a cluster status.
func checkStatusMembers(c *cluster, s status) error {
	roles := map[string]int{}
	for i, sm := range s.Members {
		m := c.members[i] // members are listed by name: alpha, bravo, charlie
		if sm.Name != m.name || sm.Address != m.addr {
			return fmt.Errorf("member %d is %s at %q, want %s at %q", i, sm.Name, sm.Address, m.name, m.addr)
		}
		roles[sm.Role]++
		if sm.Role == "leader" && sm.Name != s.Leader {
			return fmt.Errorf("%s has role leader, but the leader is %q", sm.Name, s.Leader)
		}
	}
	if len(s.Members) != 3 || roles["leader"] != 1 || roles["follower"] != 2 {
		return fmt.Errorf("roles %v of %d members, want one leader and two followers", roles, len(s.Members))
	}
	want := [][3]string{{"alpha", "bravo", "up"}, {"alpha", "charlie", "up"}, {"bravo", "charlie", "up"}}
	var got [][3]string
	for _, l := range s.Links {
		got = append(got, [3]string{l.A, l.B, l.State})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("links (a, b, state) %v, want %v", got, want)
	}
	return nil
}

func TestCLICheckoutHoldsAndReleases(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := formedWithLicense(t, 2)
	out, err := ctlOn(t, c.servers(), "--output", "json", "checkout", "--feature", "cad", "--version", "1", "--count", "2", "--hold", "2s")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "{\n  \"lease_id\": ") {
		t.Fatalf("checkout output %q does not start with the lease_id", out)
	}
	if !strings.Contains(out, "\"released\": true") {
		t.Fatalf("checkout output %q does not say the lease was released", out)
	}
	rows := c.usage(c.servers())
	if rows[0].InUse != 0 {
		t.Fatalf("after release in_use = %d", rows[0].InUse)
	}

	// A short bench smoke run: four clients on two seats (so some
	// checkouts are refused), throughput and latency printed, and every
	// seat it took given back when it ends.
	out, err = ctlOn(t, c.servers(), "bench", "--feature", "cad", "--version", "1", "--clients", "4", "--duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^checkouts/s (\d+) \((\d+) checkout\+release cycles\)$`).FindStringSubmatch(out)
	if m == nil || m[2] == "0" {
		t.Fatalf("bench output lacks a non-zero checkouts/s line:\n%s", out)
	}
	lat := regexp.MustCompile(`(?m)^checkout latency ms: p50 ([\d.]+)  p99 ([\d.]+)  max ([\d.]+)$`).FindStringSubmatch(out)
	if lat == nil {
		t.Fatalf("bench output lacks the checkout p50/p99/max line:\n%s", out)
	}
	var p [3]float64
	for i := range p {
		p[i], _ = strconv.ParseFloat(lat[i+1], 64)
	}
	if !(0 < p[0] && p[0] <= p[1] && p[1] <= p[2]) {
		t.Fatalf("bench latencies p50 %v p99 %v max %v are not 0 < p50 <= p99 <= max:\n%s", p[0], p[1], p[2], out)
	}
	if rows := c.usage(c.servers()); rows[0].InUse != 0 {
		t.Fatalf("after bench in_use = %d: it left seats held\n%s", rows[0].InUse, out)
	}
}

func TestFormationRefusals(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	a, b, cc := c.members[0], c.members[1], c.members[2]
	cases := []struct {
		name, members, want string
	}{
		{"one member", a.addr, "exactly three members; got 1"},
		{"two members", a.addr + "," + b.addr, "exactly three members; got 2"},
		{"four members", c.servers() + ",127.0.0.1:1", "exactly three members; got 4"},
		{"unreachable member", a.addr + "," + b.addr + ",127.0.0.1:1", "127.0.0.1:1 is unreachable"},
		{"duplicate", a.addr + "," + b.addr + "," + b.addr, "listed twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ctlOn(t, a.addr, "cluster", "create", "--members", tc.members)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// No failed attempt formed anything.
	var show struct{ Mode string }
	ctlJSON(t, a.addr, &show, "server", "show")
	if show.Mode != "unconfigured" {
		t.Fatalf("mode after refused formations = %q", show.Mode)
	}
	// A license cannot be enrolled before formation.
	path := c.issue("early", "--feature", "cad:1:1", "--valid-until", "2099-01-01")
	if _, err := ctlOn(t, a.addr, "license", "enroll", path); err == nil || !strings.Contains(err.Error(), "not formed") {
		t.Fatalf("enroll before formation: %v", err)
	}
	c.form()
	for _, m := range []*member{a, b, cc} {
		ctlJSON(t, m.addr, &show, "server", "show")
		if show.Mode != "failover" {
			t.Fatalf("%s mode = %q after formation", m.name, show.Mode)
		}
	}
	_, err := ctlOn(t, b.addr, "cluster", "create", "--members", c.servers())
	if err == nil || !strings.Contains(err.Error(), "already belongs to a failover cluster") ||
		!strings.Contains(err.Error(), "triadctl cluster replace-member OLD --with HOST:PORT --license NEW.lic") {
		t.Fatalf("second formation: %v", err)
	}
	// A fourth member cannot join: it is refused as a member of a formed set.
	d := newMember(t, "delta", "")
	_, err = ctlOn(t, d.addr, "cluster", "create", "--members", a.addr+","+b.addr+","+d.addr)
	if err == nil || !strings.Contains(err.Error(), "already belongs to a failover cluster") {
		t.Fatalf("joining formed members: %v", err)
	}
	// Standalone works on a fresh member.
	e := newMember(t, "echo", "")
	if _, err := ctlOn(t, e.addr, "cluster", "create", "--standalone"); err != nil {
		t.Fatal(err)
	}
	ctlJSON(t, e.addr, &show, "server", "show")
	if show.Mode != "standalone" {
		t.Fatalf("standalone mode = %q", show.Mode)
	}
}

func TestEnrollmentChecks(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	ids := c.computerIDs()
	other := startCluster(t) // a second vendor key, untrusted by c
	cases := []struct {
		name string
		path func() string
		want string
	}{
		{"wrong binding", func() string {
			return c.issueWith("bind", c.vendorKey(), ids[0]+","+ids[1]+",TRD-0000-0000-0000-0000", "--feature", "cad:1:1", "--valid-until", "2099-01-01")
		}, "computer"},
		{"expired", func() string {
			return c.issueWith("old", c.vendorKey(), strings.Join(ids, ","), "--feature", "cad:1:1", "--valid-after", "2020-01-01", "--valid-until", "2021-01-01", "--allow-expired")
		}, "expired"},
		{"untrusted signature", func() string {
			return c.issueWith("foreign", other.vendorKey(), strings.Join(ids, ","), "--feature", "cad:1:1", "--valid-until", "2099-01-01")
		}, "signature"},
		{"corrupt file", func() string { return c.writeFile("corrupt.lic", "body: !!!\n") }, "corrupt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ctlOn(t, c.servers(), "license", "enroll", tc.path())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	var lic []any
	ctlJSON(t, c.servers(), &lic, "license", "list")
	if len(lic) != 0 {
		t.Fatalf("refused licenses were enrolled: %v", lic)
	}
}

func TestRetriedCheckoutTakesOneSeat(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := formedWithLicense(t, 3)
	req := &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "retry-1", Feature: "cad", Version: 1, ClientId: rawClientID}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var first uint64
	// The same request id sent to every member (a retry after a failover).
	for i, m := range c.members {
		resp, err := licensing(t, m.addr).Checkout(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = resp.GetLease().GetLeaseId()
		} else if resp.GetLease().GetLeaseId() != first {
			t.Fatalf("retry on %s got lease %d, first got %d", m.name, resp.GetLease().GetLeaseId(), first)
		}
	}
	if rows := c.usage(c.servers()); rows[0].InUse != 1 {
		t.Fatalf("in_use = %d after three tries of one request id", rows[0].InUse)
	}
	// A wrong protocol version is refused with the documented message.
	_, err := licensing(t, c.members[0].addr).Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: 99, RequestId: "x", Feature: "cad"})
	if grpcstatus.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "license protocol version is invalid: client 99, server 2") {
		t.Fatalf("protocol mismatch: %v", err)
	}
}

// formationOf builds the formation record the members would be
// bootstrapped with, from their Peer.Info answers.
func formationOf(t *testing.T, c *cluster) (*fsmpb.FormCluster, []peerpb.PeerClient) {
	t.Helper()
	fc := &fsmpb.FormCluster{Mode: "failover"}
	var peers []peerpb.PeerClient
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range c.members { // names sort as alpha, bravo, charlie
		// The test speaks as the member itself would: a member certificate
		// of the cluster CA, on the failover port.
		p := peerAs(t, m.raftAddr, m.name)
		info, err := p.Info(ctx, &peerpb.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
		fc.Members = append(fc.Members, &fsmpb.Member{Name: info.GetName(), GrpcAddress: m.addr, RaftAddress: info.GetRaftAddress(), ComputerId: info.GetComputerId()})
	}
	return fc, peers
}

// Bootstrap is idempotent: the same bootstrap again succeeds; a member that
// learned the cluster from the leader before its own bootstrap call came
// (two members bootstrapped and elected a leader with its vote) accepts
// that same bootstrap; a different formation is refused.
func TestBootstrapIsIdempotent(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	fc, peers := formationOf(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range peers[:2] {
		if _, err := p.Bootstrap(ctx, &peerpb.BootstrapRequest{PeerProtocolVersion: 1, Cluster: fc}); err != nil {
			t.Fatal(err)
		}
	}
	charlie := c.members[2]
	waitFor(t, 15*time.Second, "charlie learned the cluster from the leader", func() error {
		var show struct{ Mode string }
		ctlJSON(t, charlie.addr, &show, "server", "show")
		if show.Mode != "failover" {
			return fmt.Errorf("charlie mode %q", show.Mode)
		}
		return nil
	})
	for i, p := range peers {
		if _, err := p.Bootstrap(ctx, &peerpb.BootstrapRequest{PeerProtocolVersion: 1, Cluster: fc}); err != nil {
			t.Fatalf("the same bootstrap on %s: %v", c.members[i].name, err)
		}
	}
	other := proto.Clone(fc).(*fsmpb.FormCluster)
	other.Members[0].RaftAddress = "127.0.0.1:1"
	_, err := peers[2].Bootstrap(ctx, &peerpb.BootstrapRequest{PeerProtocolVersion: 1, Cluster: other})
	if grpcstatus.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "already part of a cluster") {
		t.Fatalf("a different bootstrap: %v", err)
	}
	// charlie now has its formation record: it survives a restart formed.
	charlie.kill()
	charlie.start()
	var show struct{ Mode string }
	ctlJSON(t, charlie.addr, &show, "server", "show")
	if show.Mode != "failover" {
		t.Fatalf("charlie after restart: %q", show.Mode)
	}
}

// A member whose bootstrap call never came (it timed out, or the other two
// had already elected a leader) learns the formation from the leader: it
// starts its heartbeats (three links up), and keeps the formation on disk
// across a restart.
func TestMissedBootstrapLearnsFormation(t *testing.T) {
	c := startCluster(t)
	fc, peers := formationOf(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range peers[:2] {
		if _, err := p.Bootstrap(ctx, &peerpb.BootstrapRequest{PeerProtocolVersion: 1, Cluster: fc}); err != nil {
			t.Fatal(err)
		}
	}
	charlie := c.members[2]
	threeUp := func() error {
		s, err := c.status(charlie)
		if err != nil {
			return err
		}
		up := 0
		for _, l := range s.Links {
			if l.State == "up" {
				up++
			}
		}
		if s.Mode != "failover" || len(s.Links) != 3 || up != 3 || s.Status != "operational" {
			return fmt.Errorf("charlie reports %+v", s)
		}
		return nil
	}
	waitFor(t, 20*time.Second, "charlie, never bootstrapped, reports three links up", threeUp)
	charlie.kill()
	charlie.start()
	waitFor(t, 20*time.Second, "charlie after a restart reports three links up", threeUp)
}
