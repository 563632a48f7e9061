package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// A follower forwards its batches over Peer.ForwardStream; to a leader
// that does not know the stream (an older triadd answers UNIMPLEMENTED)
// it falls back to unary Forward calls and keeps to them, and either way
// every op is answered by the leader's state machine.
func TestForwardStreamAndUnaryFallback(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("older leader %v", old), func(t *testing.T) {
			ms := startMembersWith(t, func(c *Config) { c.TestNoForwardStream = old }, nil, nil, nil)
			if err := form(t, ms); err != nil {
				t.Fatal(err)
			}
			f := leaderAndFollowers(t, ms)[1].s
			for i := range 3 {
				g := &fsmpb.Grant{RequestId: fmt.Sprint("fwd-", i), ClientId: "c", Feature: "nothing", Count: 1}
				res, err := f.submitOps(ctxT(t), []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}, false)
				if err != nil {
					t.Fatalf("forwarded checkout %d: %v", i, err)
				}
				if res[0].GetCode() != fsmpb.Code_UNKNOWN_FEATURE {
					t.Fatalf("forwarded checkout %d answered %v, want the state machine's UNKNOWN_FEATURE", i, res[0])
				}
			}
			stream := testutil.ToFloat64(f.metrics.fwdCalls.WithLabelValues("stream"))
			unary := testutil.ToFloat64(f.metrics.fwdCalls.WithLabelValues("unary"))
			if !old && (stream != 3 || unary != 0) {
				t.Fatalf("to a leader with the stream: %v batches on it, %v unary, want 3 and 0", stream, unary)
			}
			if old && (stream != 0 || unary != 3) {
				t.Fatalf("to an older leader: %v batches on the stream, %v unary, want 0 and 3", stream, unary)
			}
		})
	}
}

// fakeFwdStream is the follower's end of a ForwardStream whose leader the
// test plays: it sees each batch sent and answers when the test says.
type fakeFwdStream struct {
	peerpb.Peer_ForwardStreamClient
	sent    chan *peerpb.ForwardStreamRequest
	answers chan *peerpb.ForwardStreamResponse
	end     chan error
	block   chan struct{} // when set, Send waits for it to close
}

func (f *fakeFwdStream) Send(r *peerpb.ForwardStreamRequest) error {
	if f.block != nil {
		<-f.block
	}
	f.sent <- r
	return nil
}

func (f *fakeFwdStream) Recv() (*peerpb.ForwardStreamResponse, error) {
	select {
	case a := <-f.answers:
		return a, nil
	case err := <-f.end:
		return nil, err
	}
}

// fwdAnswer is what forwardThen handed to its callback.
type fwdAnswer struct {
	resp *peerpb.ForwardResponse
	err  error
}

// streamWithFake returns a member whose forwarding stream to addr is fake,
// its reader running; cut is what the stream's cancel does.
func streamWithFake(t *testing.T, addr string, fake *fakeFwdStream, cut func()) *Server {
	t.Helper()
	s := &Server{}
	st := &fwdStream{addr: addr, stream: fake, cancel: cut, pending: map[uint64]*fwdCall{}}
	s.fwd.st = st
	go s.fwd.read(s, st)
	return s
}

func forwardAndCollect(s *Server, addr string, deadline time.Time) chan fwdAnswer {
	out := make(chan fwdAnswer, 2) // a second answer would be a bug the test sees
	s.forwardThen(addr, &peerpb.ForwardRequest{}, deadline, func(r *peerpb.ForwardResponse, err error) {
		out <- fwdAnswer{r, err}
	})
	return out
}

func waitAnswer(t *testing.T, c chan fwdAnswer) fwdAnswer {
	t.Helper()
	select {
	case a := <-c:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("a forwarded batch got no answer within 10 s")
		return fwdAnswer{}
	}
}

// A forwarded batch gets exactly one answer: the leader's, or at its
// deadline DeadlineExceeded (the leader's late answer then goes nowhere),
// or, when the stream breaks, a retryable error, for every batch waiting.
func TestForwardStreamAnswersEachBatchOnce(t *testing.T) {
	const addr = "leader:1"
	fake := &fakeFwdStream{sent: make(chan *peerpb.ForwardStreamRequest, 8),
		answers: make(chan *peerpb.ForwardStreamResponse), end: make(chan error, 1)}
	s := streamWithFake(t, addr, fake, func() {})

	slow := forwardAndCollect(s, addr, time.Now().Add(100*time.Millisecond))
	slowReq := <-fake.sent
	fast := forwardAndCollect(s, addr, time.Now().Add(time.Minute))
	fastReq := <-fake.sent
	fake.answers <- &peerpb.ForwardStreamResponse{Id: fastReq.GetId(), Forward: &peerpb.ForwardResponse{Dropped: []uint32{7}}}
	if a := waitAnswer(t, fast); a.err != nil || len(a.resp.GetDropped()) != 1 || a.resp.GetDropped()[0] != 7 {
		t.Fatalf("answered batch: got %v, %v; want the leader's answer", a.resp, a.err)
	}
	a := waitAnswer(t, slow)
	if status.Code(a.err) != codes.DeadlineExceeded {
		t.Fatalf("unanswered batch: got %v, %v; want DeadlineExceeded at its deadline", a.resp, a.err)
	}
	// The leader answers after all: nobody gets it twice.
	fake.answers <- &peerpb.ForwardStreamResponse{Id: slowReq.GetId(), Forward: &peerpb.ForwardResponse{}}

	w1 := forwardAndCollect(s, addr, time.Now().Add(time.Minute))
	<-fake.sent
	w2 := forwardAndCollect(s, addr, time.Now().Add(time.Minute))
	<-fake.sent
	fake.end <- status.Error(codes.Unavailable, "connection reset")
	for i, w := range []chan fwdAnswer{w1, w2} {
		a := waitAnswer(t, w)
		if a.err == nil || !retryable(a.err) {
			t.Fatalf("batch %d waiting when the stream broke: got %v, %v; want a retryable error", i, a.resp, a.err)
		}
	}
	// The next batch opens a new stream.
	s.fwd.mu.Lock()
	gone := s.fwd.st == nil
	s.fwd.mu.Unlock()
	if !gone {
		t.Fatal("the broken stream is still the one batches go to")
	}
	for _, c := range []chan fwdAnswer{slow, fast, w1, w2} {
		select {
		case a := <-c:
			t.Fatalf("a batch was answered twice: %v, %v", a.resp, a.err)
		default:
		}
	}
}

// A leader that stops reading (paused) blocks Send on flow control: past
// the batch's deadline the stream is cut, so the batches behind it are not
// stuck, and the batch fails.
func TestForwardStreamCutWhenSendBlocks(t *testing.T) {
	const addr = "leader:1"
	fake := &fakeFwdStream{sent: make(chan *peerpb.ForwardStreamRequest, 8),
		answers: make(chan *peerpb.ForwardStreamResponse), end: make(chan error, 1), block: make(chan struct{})}
	var once sync.Once
	cut := func() {
		once.Do(func() {
			close(fake.block)
			fake.end <- status.Error(codes.Canceled, "context canceled")
		})
	}
	s := streamWithFake(t, addr, fake, cut)
	done := make(chan struct{})
	var a fwdAnswer
	go func() {
		a = <-forwardAndCollect(s, addr, time.Now().Add(100*time.Millisecond))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a batch whose Send blocked was not failed after its deadline")
	}
	if a.err == nil {
		t.Fatalf("blocked batch answered %v, want an error", a.resp)
	}
	select {
	case <-fake.block:
	default:
		t.Fatal("the stream was not cut")
	}
}

// On the leader a forwarded batch that passes the input checks is queued
// from the stream's goroutine and answered by the state machine; anything
// else is left to the unary path (false, neither callback called): a
// member that does not lead, a batch the checks refuse.
func TestForwardedThenOnlyOnTheLeaderForValidBatches(t *testing.T) {
	ms := startMembers(t, nil, nil, nil)
	if err := form(t, ms); err != nil {
		t.Fatal(err)
	}
	lf := leaderAndFollowers(t, ms)
	leader, follower := lf[0].s, lf[1].s
	grant := func(id string) *peerpb.ForwardRequest {
		g := &fsmpb.Grant{RequestId: id, ClientId: "c", Feature: "nothing", Count: 1}
		return &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}}}
	}
	never := func(*peerpb.ForwardResponse) { t.Error("answer called for a batch left to the unary path") }
	noRetry := func() { t.Error("retry called for a batch left to the unary path") }
	if follower.forwardedThen(ctxT(t), grant("f-1"), never, noRetry) {
		t.Fatal("a follower queued a forwarded batch as if it led")
	}
	if leader.forwardedThen(ctxT(t), grant(""), never, noRetry) {
		t.Fatal("the leader queued a batch the input checks refuse (no request id)")
	}
	if leader.forwardedThen(ctxT(t), &peerpb.ForwardRequest{Batch: &fsmpb.Batch{}}, never, noRetry) {
		t.Fatal("the leader queued an empty batch")
	}
	got := make(chan *peerpb.ForwardResponse, 1)
	if !leader.forwardedThen(ctxT(t), grant("l-1"), func(r *peerpb.ForwardResponse) { got <- r }, noRetry) {
		t.Fatal("the leader did not queue a valid forwarded batch")
	}
	select {
	case r := <-got:
		if len(r.GetResults()) != 1 || r.GetResults()[0].GetCode() != fsmpb.Code_UNKNOWN_FEATURE {
			t.Fatalf("forwarded batch answered %v, want the state machine's UNKNOWN_FEATURE", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued forwarded batch not answered")
	}
}

// A forwarded batch queued on the leader whose flush fails (here the
// leader's log write: its disk fails) is not answered from the queue: it
// goes back to the stream's retry path (the unary Forward on a worker),
// which answers it with that path's errors and retries.
func TestForwardedThenRetriesWhenTheFlushFails(t *testing.T) {
	ms := startMembersWith(t, func(c *Config) { c.DiskFaultFile = filepath.Join(c.DataDir, "disk-fault") }, nil, nil, nil)
	if err := form(t, ms); err != nil {
		t.Fatal(err)
	}
	lf := leaderAndFollowers(t, ms)
	leader := lf[0].s
	if err := os.WriteFile(leader.cfg.DiskFaultFile, []byte("eio"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &fsmpb.Grant{RequestId: "l-fail", ClientId: "c", Feature: "nothing", Count: 1}
	req := &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}}}
	retried := make(chan struct{})
	queued := leader.forwardedThen(ctxT(t), req, func(r *peerpb.ForwardResponse) {
		t.Errorf("a batch whose flush failed was answered from the queue: %v", r)
	}, func() { close(retried) })
	if !queued {
		t.Fatal("the leader did not queue a valid forwarded batch (its disk had not failed yet)")
	}
	select {
	case <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("a batch whose flush failed was neither answered nor sent to the retry path")
	}
}
