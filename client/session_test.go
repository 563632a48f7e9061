package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// sessionMember serves a fake member's calls over Licensing.Session too,
// the way triadd does (each call runs the unary handler under its own
// deadline; errors carry their full status), and counts which path each
// call took.
type sessionMember struct {
	*fakeMember
	mu              sync.Mutex
	refuse          bool // answer Session with UNIMPLEMENTED, as an older triadd
	breakAfterGrant bool // once: grant a checkout, then break the stream unanswered
	batches         bool // take batched calls and say so in the header, as triadd does
	opened          int
	batchMsgs       int // messages carrying a batch
	batchedCalls    int // calls that came in one
	streamCalls     int
	unaryCalls      int
	cancels         int
}

func (s *sessionMember) count(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *sessionMember) Checkout(ctx context.Context, r *triadv1.CheckoutRequest) (*triadv1.CheckoutResponse, error) {
	s.count(func() { s.unaryCalls++ })
	return s.fakeMember.Checkout(ctx, r)
}

func (s *sessionMember) Renew(ctx context.Context, r *triadv1.RenewRequest) (*triadv1.RenewResponse, error) {
	s.count(func() { s.unaryCalls++ })
	return s.fakeMember.Renew(ctx, r)
}

func (s *sessionMember) Release(ctx context.Context, r *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	s.count(func() { s.unaryCalls++ })
	return s.fakeMember.Release(ctx, r)
}

func (s *sessionMember) Session(stream triadv1.Licensing_SessionServer) error {
	s.mu.Lock()
	s.opened++
	refuse := s.refuse
	s.mu.Unlock()
	if refuse {
		return status.Error(codes.Unimplemented, "unknown method Session for service triad.v1.Licensing")
	}
	if s.batches {
		if err := stream.SendHeader(metadata.Pairs("triad-session-batch", "1")); err != nil {
			return err
		}
	}
	var (
		sendMu  sync.Mutex
		mu      sync.Mutex
		cancels = map[uint64]context.CancelFunc{}
		broken  = make(chan struct{})
		once    sync.Once
	)
	reqs := make(chan *triadv1.SessionRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			if b := req.GetBatch(); len(b) > 0 {
				s.count(func() { s.batchMsgs++; s.batchedCalls += len(b) })
				for _, one := range b {
					reqs <- one
				}
				continue
			}
			reqs <- req
		}
	}()
	for {
		var req *triadv1.SessionRequest
		select {
		case <-broken:
			return status.Error(codes.Unavailable, "connection reset")
		case r, ok := <-reqs:
			if !ok {
				return nil
			}
			req = r
		}
		if req.GetCancel() {
			s.count(func() { s.cancels++ })
			mu.Lock()
			if c := cancels[req.CallId]; c != nil {
				c()
			}
			mu.Unlock()
			continue
		}
		s.count(func() { s.streamCalls++ })
		ctx, cancel := context.WithTimeout(stream.Context(), time.Duration(req.TimeoutMs)*time.Millisecond)
		mu.Lock()
		cancels[req.CallId] = cancel
		mu.Unlock()
		go func() {
			defer cancel()
			out := &triadv1.SessionResponse{CallId: req.CallId}
			var err error
			switch c := req.Call.(type) {
			case *triadv1.SessionRequest_Checkout:
				var r *triadv1.CheckoutResponse
				r, err = s.fakeMember.Checkout(ctx, c.Checkout)
				s.mu.Lock()
				brk := s.breakAfterGrant && err == nil
				s.breakAfterGrant = false
				s.mu.Unlock()
				if brk {
					once.Do(func() { close(broken) })
					return
				}
				out.Result = &triadv1.SessionResponse_Checkout{Checkout: r}
			case *triadv1.SessionRequest_Renew:
				var r *triadv1.RenewResponse
				r, err = s.fakeMember.Renew(ctx, c.Renew)
				out.Result = &triadv1.SessionResponse_Renew{Renew: r}
			case *triadv1.SessionRequest_Release:
				var r *triadv1.ReleaseResponse
				r, err = s.fakeMember.Release(ctx, c.Release)
				out.Result = &triadv1.SessionResponse_Release{Release: r}
			}
			if err != nil {
				b, _ := proto.Marshal(status.Convert(err).Proto())
				out.Result = &triadv1.SessionResponse_Error{Error: b}
			}
			sendMu.Lock()
			_ = stream.Send(out)
			sendMu.Unlock()
		}()
	}
}

func newSessionCluster(t *testing.T, n int) (*fakeCluster, []*sessionMember) {
	var sms []*sessionMember
	cl := newFakeClusterWith(t, n, func(srv *grpc.Server, m *fakeMember) {
		sm := &sessionMember{fakeMember: m}
		sms = append(sms, sm)
		triadv1.RegisterLicensingServer(srv, sm)
	})
	return cl, sms
}

// Checkouts, renewals and releases of one client share one Session stream
// per member; no unary call is made once the connection is up.
func TestSessionCarriesCalls(t *testing.T) {
	cl, sms := newSessionCluster(t, 1)
	c, err := New(cl.addrs(), WithInsecure(), WithRenewInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A call that finds the connection not yet up goes unary (how many do
	// depends on scheduling); wait for it, so that every call below must
	// take the stream.
	conn := c.cluster.members[0].conn
	conn.Connect()
	waitUntil(t, 5*time.Second, "the connection up", func() bool { return conn.GetState() == connectivity.Ready })
	first, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
	if err != nil {
		t.Fatal(err)
	}
	var leases []*Lease
	for range 5 {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	waitUntil(t, 5*time.Second, "a renewal over the stream", func() bool {
		var n int
		sms[0].fakeMember.set(func(m *fakeMember) { n = len(m.renews) })
		return n >= 2
	})
	for _, l := range append(leases, first) {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := cl.inUse("cad"); n != 0 {
		t.Fatalf("%d seats in use after releasing all", n)
	}
	sm := sms[0]
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.opened != 1 || sm.unaryCalls != 0 || sm.streamCalls < 6+2+6 {
		t.Fatalf("streams opened %d, unary calls %d, stream calls %d: want 1 stream carrying every call", sm.opened, sm.unaryCalls, sm.streamCalls)
	}
}

// Calls ready together go in one message to a member that says it takes
// batches, and never to one that does not (an older triadd, which would
// read a batch as an empty call); either way every call is answered once.
func TestSessionBatchesOnlyWhereTaken(t *testing.T) {
	for _, takes := range []bool{true, false} {
		cl, sms := newSessionCluster(t, 1)
		sms[0].batches = takes
		cl.mu.Lock()
		cl.capacity["cad"] = 1000
		cl.mu.Unlock()
		c, err := New(cl.addrs(), WithInsecure(), WithRenewInterval(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn := c.cluster.members[0].conn
		conn.Connect()
		waitUntil(t, 5*time.Second, "the connection up", func() bool { return conn.GetState() == connectivity.Ready })
		taken := 0
		batched := func() int {
			sms[0].mu.Lock()
			defer sms[0].mu.Unlock()
			return sms[0].batchMsgs
		}
		// Rounds of 32 concurrent checkouts until one round batched (or,
		// for the member that does not take batches, 5 rounds).
		for round := 0; takes && batched() == 0 || !takes && round < 5; round++ {
			if ctx.Err() != nil {
				t.Fatalf("no batch in %d rounds of 32 concurrent checkouts", round)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			taken += 32
		}
		if n := cl.inUse("cad"); int(n) != taken {
			t.Fatalf("batches %v: %d seats in use after %d checkouts", takes, n, taken)
		}
		sm := sms[0]
		sm.mu.Lock()
		msgs, calls, unary := sm.batchMsgs, sm.batchedCalls, sm.unaryCalls
		sm.mu.Unlock()
		if !takes && msgs != 0 {
			t.Fatalf("%d batched messages sent to a member that does not take them", msgs)
		}
		if takes && (calls < 2*msgs || unary != 0) {
			t.Fatalf("%d batched messages carrying %d calls, %d unary calls", msgs, calls, unary)
		}
		cancel()
		c.Close()
	}
}

// A member without Session (an older triadd) is called with unary RPCs,
// and the stream is not tried again on every call.
func TestSessionFallsBackToUnary(t *testing.T) {
	cl, sms := newSessionCluster(t, 1)
	sms[0].refuse = true
	c, err := New(cl.addrs(), WithInsecure(), WithRenewInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 6 {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sm := sms[0]
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.unaryCalls != 12 || sm.streamCalls != 0 || sm.opened > 1 {
		t.Fatalf("unary calls %d, stream calls %d, streams tried %d: want 12 unary calls and the stream tried at most once", sm.unaryCalls, sm.streamCalls, sm.opened)
	}
	// WithUnaryCalls never tries the stream.
	cl2, sms2 := newSessionCluster(t, 1)
	c2, err := New(cl2.addrs(), WithInsecure(), WithRenewInterval(time.Hour), WithUnaryCalls())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for range 3 {
		if _, err := c2.Checkout(ctx, CheckoutRequest{Feature: "cad"}); err != nil {
			t.Fatal(err)
		}
	}
	if sms2[0].opened != 0 || sms2[0].unaryCalls != 3 {
		t.Fatalf("WithUnaryCalls: streams %d, unary calls %d", sms2[0].opened, sms2[0].unaryCalls)
	}
}

// A stream that breaks after the member granted, before it answered: the
// client gets no answer, retries with the same request id (on the next
// member), and ends up with the one lease granted, not two.
func TestSessionBrokenStreamKeepsIdempotency(t *testing.T) {
	cl, sms := newSessionCluster(t, 2)
	c, err := New(cl.addrs(), WithInsecure(), WithRenewInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	warm, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"}) // connection up, stream opened next
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the stream in use", func() bool {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		sms[0].count(func() { n = sms[0].streamCalls })
		return n > 0
	})
	sms[0].count(func() { sms[0].breakAfterGrant = true })
	l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad", RequestID: "resume-me"})
	if err != nil {
		t.Fatal(err)
	}
	if n := cl.inUse("cad"); n != 1 {
		t.Fatalf("%d seats in use after a checkout whose stream broke, want 1 (the retry found the grant)", n)
	}
	var brokeIt bool
	sms[0].count(func() { brokeIt = !sms[0].breakAfterGrant })
	if !brokeIt {
		t.Fatal("the checkout did not go over the stream that was to break")
	}
	if got := cl.numLeases(); got != 1 || l.ID() == 0 {
		t.Fatalf("%d leases, lease id %d", got, l.ID())
	}
}

// A call whose context ends returns at once with the context's error, and
// the member is told to drop it (a cancel message on the stream).
func TestSessionCancel(t *testing.T) {
	cl, sms := newSessionCluster(t, 1)
	c, err := New(cl.addrs(), WithInsecure(), WithRenewInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitUntil(t, 5*time.Second, "the stream in use", func() bool {
		l, err := c.Checkout(ctx, CheckoutRequest{Feature: "cad"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		sms[0].count(func() { n = sms[0].streamCalls })
		return n > 0
	})
	var before int
	sms[0].fakeMember.set(func(m *fakeMember) { m.hang, before = true, len(m.checkouts) })
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.Checkout(cctx, CheckoutRequest{Feature: "cad"})
		done <- err
	}()
	waitUntil(t, 5*time.Second, "the hanging checkout reached the member", func() bool {
		var n int
		sms[0].fakeMember.set(func(m *fakeMember) { n = len(m.checkouts) })
		return n > before
	})
	ccancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
			t.Fatalf("cancelled checkout: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled checkout did not return")
	}
	waitUntil(t, 5*time.Second, "the member told of the cancel", func() bool {
		var n int
		sms[0].count(func() { n = sms[0].cancels })
		return n >= 1
	})
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
