package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// sessionErr decodes a SessionResponse's error (nil when it has none).
func sessionErr(t *testing.T, r *triadv1.SessionResponse) error {
	t.Helper()
	b := r.GetError()
	if b == nil {
		return nil
	}
	var s spb.Status
	if err := proto.Unmarshal(b, &s); err != nil {
		t.Fatalf("unreadable session error: %v", err)
	}
	return grpcstatus.FromProto(&s).Err()
}

// TestSessionStream drives Licensing.Session with the raw generated stub,
// through a follower and on the leader, and checks it means what the unary
// calls mean: a checkout answered after commit with the lease and its
// secret, the same request id giving the same lease (never a second seat),
// capacity enforced, renew and release needing the secret, per-call
// errors with the unary call's code, calls answered out of order by id, a
// bad call refused without ending the stream; then the client library on
// the stream through a leader kill.
func TestSessionStream(t *testing.T) {
	t.Parallel()
	c := formedWithLicense(t, 2)
	leader := c.leader(c.members[0])
	var follower *member
	for _, m := range c.members {
		if m != leader {
			follower = m
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, m := range []*member{follower, leader} {
		s, err := licensing(t, m.addr).Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		call := func(id uint64, req *triadv1.SessionRequest) *triadv1.SessionResponse {
			t.Helper()
			req.CallId, req.TimeoutMs = id, 10000
			if err := s.Send(req); err != nil {
				t.Fatal(err)
			}
			r, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.CallId != id {
				t.Fatalf("answer to call %d, want %d", r.CallId, id)
			}
			return r
		}
		co := &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "sess-" + m.name, Feature: "cad", Version: 1, ClientId: "c-" + m.name, User: "u"}
		r := call(1, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: co}})
		if err := sessionErr(t, r); err != nil {
			t.Fatalf("%s: checkout: %v", m.name, err)
		}
		lease, secret := r.GetCheckout().GetLease(), r.GetCheckout().GetLeaseSecret()
		if lease.GetLeaseId() == 0 || lease.GetFencingIndex() == 0 || len(secret) == 0 {
			t.Fatalf("%s: checkout answered %v", m.name, r)
		}
		// The same request id again: the same lease and secret, no second seat.
		r = call(2, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: co}})
		if err := sessionErr(t, r); err != nil || r.GetCheckout().GetLease().GetLeaseId() != lease.GetLeaseId() || string(r.GetCheckout().GetLeaseSecret()) != string(secret) {
			t.Fatalf("%s: retried checkout: %v %v, want lease %d again", m.name, err, r, lease.GetLeaseId())
		}
		if rows := c.usage(c.servers()); rows[0].InUse != 1 {
			t.Fatalf("%s: in use %d after a checkout and its retry, want 1", m.name, rows[0].InUse)
		}
		// Capacity: two seats; the third checkout is refused with the unary code.
		co2 := proto.Clone(co).(*triadv1.CheckoutRequest)
		co2.RequestId += "-2"
		if err := sessionErr(t, call(3, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: co2}})); err != nil {
			t.Fatal(err)
		}
		co3 := proto.Clone(co).(*triadv1.CheckoutRequest)
		co3.RequestId += "-3"
		if err := sessionErr(t, call(4, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: co3}})); grpcstatus.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%s: checkout beyond capacity: %v, want RESOURCE_EXHAUSTED", m.name, err)
		}
		// A wrong protocol version: FAILED_PRECONDITION, the stream goes on.
		bad := proto.Clone(co).(*triadv1.CheckoutRequest)
		bad.ProtocolVersion = 1
		if err := sessionErr(t, call(5, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: bad}})); grpcstatus.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s: protocol 1: %v, want FAILED_PRECONDITION", m.name, err)
		}
		// A call with nothing in it: INVALID_ARGUMENT naming what it takes.
		if err := sessionErr(t, call(6, &triadv1.SessionRequest{})); grpcstatus.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: empty call: %v, want INVALID_ARGUMENT", m.name, err)
		}
		// Renew without the secret fails, with it succeeds.
		r = call(7, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Renew{Renew: &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{lease.GetLeaseId()}, LeaseSecrets: [][]byte{[]byte("guess")}}}})
		if err := sessionErr(t, r); err != nil || r.GetRenew().GetResults()[0].GetOk() {
			t.Fatalf("%s: renew with a wrong secret: %v %v, want refused", m.name, err, r)
		}
		r = call(8, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Renew{Renew: &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{lease.GetLeaseId()}, LeaseSecrets: [][]byte{secret}}}})
		if err := sessionErr(t, r); err != nil || !r.GetRenew().GetResults()[0].GetOk() {
			t.Fatalf("%s: renew: %v %v", m.name, err, r)
		}
		// Two releases in flight at once: each answered under its own id.
		id2 := call(9, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: co2}}).GetCheckout()
		for i, l := range []struct {
			id     uint64
			secret []byte
		}{{lease.GetLeaseId(), secret}, {id2.GetLease().GetLeaseId(), id2.GetLeaseSecret()}} {
			if err := s.Send(&triadv1.SessionRequest{CallId: uint64(20 + i), TimeoutMs: 10000, Call: &triadv1.SessionRequest_Release{Release: &triadv1.ReleaseRequest{
				ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{l.id}, LeaseSecrets: [][]byte{l.secret}}}}); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[uint64]bool{}
		for range 2 {
			r, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := sessionErr(t, r); err != nil || !r.GetRelease().GetResults()[0].GetReleased() {
				t.Fatalf("%s: release %d: %v %v", m.name, r.CallId, err, r)
			}
			seen[r.CallId] = true
		}
		if !seen[20] || !seen[21] {
			t.Fatalf("%s: answers to calls %v, want 20 and 21", m.name, seen)
		}
		if rows := c.usage(c.servers()); rows[0].InUse != 0 {
			t.Fatalf("%s: in use %d after releasing over the stream", m.name, rows[0].InUse)
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
	}

	for _, m := range []*member{follower, leader} {
		checkSessionBatches(t, ctx, c, m)
	}

	// The client library (Session streams by default) keeps its lease
	// through a leader kill: renewals resume on the new leader.
	cl, err := client.New([]string{c.members[0].addr, c.members[1].addr, c.members[2].addr}, tlsOption(t), client.WithRenewInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	leader = c.leader(c.members[0])
	leader.kill()
	var survivor *member
	for _, m := range c.members {
		if m != leader {
			survivor = m
		}
	}
	c.newLeader(survivor, leader)
	renewed := l.LastRenewed()
	waitFor(t, 30*time.Second, "a renewal after the leader kill", func() error {
		if !l.LastRenewed().After(renewed) {
			return grpcstatus.Error(codes.Unavailable, "not yet renewed")
		}
		return nil
	})
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkSessionBatches drives batched Session messages on m with the raw
// stub (the cluster's license has 2 seats, none in use): a batch is
// answered call by call, as if each had come alone; malformed batches
// are refused whole, changing nothing; answers come batched only to a
// client that asked for them.
func checkSessionBatches(t *testing.T, ctx context.Context, c *cluster, m *member) {
	t.Helper()
	co := func(id string) *triadv1.SessionRequest {
		return &triadv1.SessionRequest{TimeoutMs: 10000, Call: &triadv1.SessionRequest_Checkout{Checkout: &triadv1.CheckoutRequest{
			ProtocolVersion: client.ProtocolVersion, RequestId: "batch-" + m.name + "-" + id, Feature: "cad", Version: 1, ClientId: "cb-" + m.name, User: "u"}}}
	}
	withIDs := func(first uint64, reqs ...*triadv1.SessionRequest) []*triadv1.SessionRequest {
		for i, r := range reqs {
			r.CallId = first + uint64(i)
		}
		return reqs
	}
	// recv reads answers until n calls are answered; batched counts the
	// messages that carried more than one.
	recv := func(s triadv1.Licensing_SessionClient, n int) (map[uint64]*triadv1.SessionResponse, int) {
		t.Helper()
		got, batched := map[uint64]*triadv1.SessionResponse{}, 0
		for len(got) < n {
			r, err := s.Recv()
			if err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			one := []*triadv1.SessionResponse{r}
			if len(r.GetBatch()) > 0 {
				if r.GetCallId() != 0 || r.GetResult() != nil {
					t.Fatalf("%s: a batched answer carries more than its batch: %v", m.name, r)
				}
				one = r.GetBatch()
				if len(one) > 1 {
					batched++
				}
			}
			for _, a := range one {
				if _, dup := got[a.GetCallId()]; dup {
					t.Fatalf("%s: call %d answered twice", m.name, a.GetCallId())
				}
				got[a.GetCallId()] = a
			}
		}
		return got, batched
	}
	inUse := func() uint32 { return c.usage(c.servers())[0].InUse }

	s, err := licensing(t, m.addr).Session(metadata.AppendToOutgoingContext(ctx, "triad-session-batch", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if md, err := s.Header(); err != nil || md.Get("triad-session-batch")[0] != "1" {
		t.Fatalf("%s: response header %v (%v), want triad-session-batch: 1", m.name, md, err)
	}
	// Three checkouts in one message, two seats: two leases, one refusal.
	if err := s.Send(&triadv1.SessionRequest{Batch: withIDs(1, co("a"), co("b"), co("c"))}); err != nil {
		t.Fatal(err)
	}
	got, _ := recv(s, 3)
	var leases []*triadv1.CheckoutResponse
	for id := uint64(1); id <= 3; id++ {
		r := got[id]
		switch err := sessionErr(t, r); {
		case err == nil && r.GetCheckout().GetLease().GetLeaseId() != 0:
			leases = append(leases, r.GetCheckout())
		case grpcstatus.Code(err) != codes.ResourceExhausted:
			t.Fatalf("%s: batched checkout %d: %v %v", m.name, id, err, r)
		}
	}
	if len(leases) != 2 || inUse() != 2 {
		t.Fatalf("%s: %d leases granted, %d seats in use from a batch of 3 checkouts on 2 seats, want 2 and 2", m.name, len(leases), inUse())
	}
	// Malformed batches are refused whole, every call answered with why,
	// nothing taken (the seats are full, but a refused release would show).
	rel := func(l *triadv1.CheckoutResponse) *triadv1.SessionRequest {
		return &triadv1.SessionRequest{TimeoutMs: 10000, Call: &triadv1.SessionRequest_Release{Release: &triadv1.ReleaseRequest{
			ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{l.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{l.GetLeaseSecret()}}}}
	}
	outer := rel(leases[0])
	outer.CallId = 10
	outer.Batch = withIDs(11, rel(leases[1]))
	// A call holding a batch of its own is refused; what it holds never runs.
	nested := &triadv1.SessionRequest{Batch: withIDs(20, &triadv1.SessionRequest{Batch: withIDs(21, rel(leases[0]))})}
	var big []*triadv1.SessionRequest
	for range 1025 {
		big = append(big, rel(leases[0]))
	}
	for _, bad := range []struct {
		msg     *triadv1.SessionRequest
		refused []uint64
	}{
		{outer, []uint64{10, 11}},
		{nested, []uint64{20}},
		{&triadv1.SessionRequest{Batch: withIDs(100, big...)}, nil},
	} {
		refused := bad.refused
		if len(bad.msg.GetBatch()) > 1024 {
			for _, r := range bad.msg.GetBatch() {
				refused = append(refused, r.GetCallId())
			}
		}
		if err := s.Send(bad.msg); err != nil {
			t.Fatal(err)
		}
		got, _ := recv(s, len(refused))
		for _, id := range refused {
			if err := sessionErr(t, got[id]); grpcstatus.Code(err) != codes.InvalidArgument {
				t.Fatalf("%s: call %d of a malformed batch: %v, want INVALID_ARGUMENT", m.name, id, err)
			}
		}
		if inUse() != 2 {
			t.Fatalf("%s: a refused batch changed the seats in use to %d", m.name, inUse())
		}
	}
	// Both releases in one message; the answers of one Raft entry come
	// back in one message to this client.
	if err := s.Send(&triadv1.SessionRequest{Batch: withIDs(200, rel(leases[0]), rel(leases[1]))}); err != nil {
		t.Fatal(err)
	}
	got, _ = recv(s, 2)
	for id := uint64(200); id <= 201; id++ {
		if err := sessionErr(t, got[id]); err != nil || !got[id].GetRelease().GetResults()[0].GetReleased() {
			t.Fatalf("%s: batched release %d: %v %v", m.name, id, err, got[id])
		}
	}
	if inUse() != 0 {
		t.Fatalf("%s: %d seats in use after the batched releases", m.name, inUse())
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}

	// A client that did not ask: batched calls are served, answers come
	// one per message.
	s, err = licensing(t, m.addr).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var many []*triadv1.SessionRequest
	for i := range 8 {
		many = append(many, co(fmt.Sprint("plain-", i)))
	}
	if err := s.Send(&triadv1.SessionRequest{Batch: withIDs(300, many...)}); err != nil {
		t.Fatal(err)
	}
	got, batched := recv(s, 8)
	if batched != 0 {
		t.Fatalf("%s: %d batched answers to a client that did not ask for them", m.name, batched)
	}
	var ids []uint64
	var secrets [][]byte
	for _, r := range got {
		if l := r.GetCheckout().GetLease(); l != nil {
			ids, secrets = append(ids, l.GetLeaseId()), append(secrets, r.GetCheckout().GetLeaseSecret())
		}
	}
	if len(ids) != 2 {
		t.Fatalf("%s: %d of 8 batched checkouts granted on 2 seats", m.name, len(ids))
	}
	if err := s.Send(&triadv1.SessionRequest{CallId: 400, TimeoutMs: 10000, Call: &triadv1.SessionRequest_Release{Release: &triadv1.ReleaseRequest{
		ProtocolVersion: client.ProtocolVersion, LeaseIds: ids, LeaseSecrets: secrets}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := recv(s, 1); sessionErr(t, got[400]) != nil || inUse() != 0 {
		t.Fatalf("%s: release of the plain client's leases: %v, %d in use", m.name, got[400], inUse())
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
}
