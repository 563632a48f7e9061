package server

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// sessionMaxInFlight bounds the calls of one Session stream being served at
// once: the reader stops reading (HTTP/2 flow control pushes back on the
// client) until one ends, as a connection's unary calls are bounded by
// its concurrent streams.
const sessionMaxInFlight = 1024

// sessionWorkers is how many goroutines the member keeps for Session
// calls (workers.go): enough for every call in flight at the standard load
// (64 clients), with room.
const sessionWorkers = 512

// sessionBatchHeader is the header by which a client asks for batched
// answers (request) and a member says it takes batched calls (response).
const sessionBatchHeader = "triad-session-batch"

// sessionMaxBatch bounds the calls of one batched SessionRequest.
const sessionMaxBatch = 1024

// Session serves a client's checkouts, renewals and releases over one
// stream (issue 15). Each call is answered exactly as the unary call of the
// same name would be: the same checks and guards (disk fence, halted for
// an upgrade), only after commit, idempotent by request id, with the FSM's
// capacity checks. A call whose op can go to the batcher at once goes
// there from this goroutine and is answered from the goroutine that
// flushed it (sessionThen); any other, and one whose first attempt failed
// before its deadline, runs the unary handler on a worker under its own
// deadline (sessionCall), which waits for a leader and retries.
//
// Calls may come several to a message (SessionRequest.batch). One
// goroutine sends the answers: whatever is ready when it gets to send goes
// out together, in one message for a client that asked for batches (the
// answers of one Raft entry are ready at once), so a busy stream costs one
// frame and one write for several calls instead of one each.
func (l *licensingService) Session(stream triadv1.Licensing_SessionServer) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	batched := slices.Contains(md.Get(sessionBatchHeader), "1")
	if err := stream.SendHeader(metadata.Pairs(sessionBatchHeader, "1")); err != nil {
		return nil // the stream is gone
	}
	var (
		mu     sync.Mutex
		calls  = map[uint64]context.CancelFunc{}
		closed bool // the stream ended: no new worker starts (mu)
		wg     sync.WaitGroup
		slots  = make(chan struct{}, sessionMaxInFlight)
		out    = newSessionOutbox()
	)
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		out.run(stream, batched)
	}()
	defer func() {
		// The stream ended: abandon the calls in flight (their answers
		// cannot be delivered), wait for them, then for the sender.
		mu.Lock()
		closed = true
		for _, cancel := range calls {
			cancel()
		}
		mu.Unlock()
		wg.Wait()
		out.close()
		<-senderDone
	}()
	// serve runs a call on a worker, the waiting way (sessionCall), unless
	// the stream has ended. It may be called after the handler returned
	// (a call started without a worker that must be retried).
	serve := func(req *triadv1.SessionRequest, deadline time.Time) {
		id := req.GetCallId()
		cctx, cancel := context.WithCancel(ctx)
		if !deadline.IsZero() {
			cctx, cancel = context.WithDeadline(ctx, deadline)
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			cancel()
			return
		}
		calls[id] = cancel
		wg.Add(1)
		mu.Unlock()
		l.s.callWorkers.run(func() {
			defer wg.Done()
			resp := l.sessionCall(cctx, req)
			mu.Lock()
			delete(calls, id)
			mu.Unlock()
			cancel()
			<-slots
			out.add(resp)
		})
	}
	// handle starts one call; false when the stream ended.
	handle := func(req *triadv1.SessionRequest) bool {
		id := req.GetCallId()
		if req.GetCancel() {
			mu.Lock()
			if cancel, ok := calls[id]; ok {
				cancel()
			}
			mu.Unlock()
			return true
		}
		if len(req.GetBatch()) > 0 {
			out.add(sessionError(id, status.Errorf(codes.InvalidArgument, "session call %d carries a batch of its own: a batch holds single calls only", id)))
			return true
		}
		// The id stays taken until the call is answered.
		mu.Lock()
		_, dup := calls[id]
		if !dup {
			calls[id] = noCancel // replaced by serve's cancel on a worker
		}
		mu.Unlock()
		if dup {
			out.add(sessionError(id, status.Errorf(codes.InvalidArgument, "session call id %d is already in flight on this stream: use a new id per call", id)))
			return true
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		var deadline time.Time
		if t := req.GetTimeoutMs(); t > 0 {
			deadline = time.Now().Add(time.Duration(t) * time.Millisecond)
		}
		// Without a worker when it can (sessionThen).
		started := l.sessionThen(ctx, req, deadline, func(resp *triadv1.SessionResponse) {
			mu.Lock()
			delete(calls, id)
			mu.Unlock()
			<-slots
			out.add(resp)
		}, func() { serve(req, deadline) })
		if !started {
			serve(req, deadline)
		}
		return true
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the client closed the stream, or it broke
		}
		batch := req.GetBatch()
		switch {
		case len(batch) == 0:
			if !handle(req) {
				return nil
			}
		case req.GetCallId() != 0 || req.GetTimeoutMs() != 0 || req.GetCall() != nil:
			// Refused whole: every call in it, and the message's own, is
			// answered with why.
			err := status.Error(codes.InvalidArgument, "a session message with a batch carries nothing else: put every call, with its call_id and timeout_ms, in the batch")
			out.add(sessionError(req.GetCallId(), err))
			for _, c := range batch {
				out.add(sessionError(c.GetCallId(), err))
			}
		case len(batch) > sessionMaxBatch:
			for _, c := range batch {
				out.add(sessionError(c.GetCallId(), status.Errorf(codes.InvalidArgument, "a session batch of %d calls is too large: at most %d per message", len(batch), sessionMaxBatch)))
			}
		default:
			for _, c := range batch {
				if !handle(c) {
					return nil
				}
			}
		}
	}
}

// noCancel stands in the calls in flight for a call served without a
// worker: nothing to cancel (its op is queued or proposed already).
func noCancel() {}

// sessionThen starts a checkout, renewal or release without a worker:
// its op goes to the batcher now (submitOpsThen), and its answer is made
// on the goroutine that flushed the batch, where answer gets it. That is
// two goroutine hand-offs fewer per call than sessionCall on a worker.
// A call that fails there (a leader change, a dropped forward), unless its
// deadline passed, is handed to retry, which serves it the waiting way:
// with the same request id, as route retries it. It reports false when
// the call must be served that way from the start (a halted or fenced
// member, no leader known, a request the checks refuse: sessionCall
// answers those exactly as the unary call does).
func (l *licensingService) sessionThen(ctx context.Context, req *triadv1.SessionRequest, deadline time.Time, answer func(*triadv1.SessionResponse), retry func()) bool {
	if l.s.diskFault() != nil || l.s.haltedError() != nil {
		return false
	}
	id := req.GetCallId()
	var (
		op     *fsmpb.Op
		err    error
		method int
		result func(*fsmpb.OpResult) *triadv1.SessionResponse
	)
	switch c := req.GetCall().(type) {
	case *triadv1.SessionRequest_Checkout:
		method = methodCheckout
		op, err = l.checkoutOp(c.Checkout)
		result = func(r *fsmpb.OpResult) *triadv1.SessionResponse {
			resp, err := l.took(c.Checkout, r)
			if err != nil {
				return sessionError(id, err)
			}
			return &triadv1.SessionResponse{CallId: id, Result: &triadv1.SessionResponse_Checkout{Checkout: resp}}
		}
	case *triadv1.SessionRequest_Renew:
		method = methodRenew
		op, err = l.renewOp(c.Renew)
		result = func(r *fsmpb.OpResult) *triadv1.SessionResponse {
			return &triadv1.SessionResponse{CallId: id, Result: &triadv1.SessionResponse_Renew{Renew: l.renewed(r)}}
		}
	case *triadv1.SessionRequest_Release:
		method = methodRelease
		op, err = releaseOp(c.Release)
		result = func(r *fsmpb.OpResult) *triadv1.SessionResponse {
			return &triadv1.SessionResponse{CallId: id, Result: &triadv1.SessionResponse_Release{Release: released(r)}}
		}
	default:
		return false
	}
	if err != nil {
		return false
	}
	start := time.Now()
	return l.s.submitOpsThen(ctx, []*fsmpb.Op{op}, deadline, func(res []*fsmpb.OpResult, err error) {
		// A retried call is counted by the unary handler it runs, once.
		if err != nil && (deadline.IsZero() || time.Now().Before(deadline)) {
			retry()
			return
		}
		if c := req.GetRenew(); c != nil {
			l.m.renewIDs(len(c.GetLeaseIds()))
		}
		if err == nil && res[0] != nil {
			answer(result(res[0]))
		} else {
			// Dropped unproposed for its deadline (nil result), or failed
			// after it: as submitOps answers.
			if method == methodCheckout {
				l.m.checkoutError()
			}
			answer(sessionError(id, toStatus(context.DeadlineExceeded)))
		}
		l.m.observe(method, start)
	})
}

// sessionOutbox holds a stream's answers until its sender sends them.
type sessionOutbox struct {
	mu     sync.Mutex
	queue  []*triadv1.SessionResponse
	wake   chan struct{} // a send is due
	closed chan struct{}
}

func newSessionOutbox() *sessionOutbox {
	return &sessionOutbox{wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (o *sessionOutbox) add(r *triadv1.SessionResponse) {
	o.mu.Lock()
	o.queue = append(o.queue, r)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *sessionOutbox) close() { close(o.closed) }

// run sends the queued answers until close: in one message when there are
// several and batched, one by one otherwise. A failed send means the
// stream is gone (Recv reports it); later answers are dropped.
func (o *sessionOutbox) run(stream triadv1.Licensing_SessionServer, batched bool) {
	broken := false
	for {
		select {
		case <-o.closed:
			return
		case <-o.wake:
		}
		// Let the answers woken with this one (one Raft entry's) queue
		// behind it first.
		runtime.Gosched()
		o.mu.Lock()
		q := o.queue
		o.queue = nil
		o.mu.Unlock()
		if broken || len(q) == 0 {
			continue
		}
		if batched && len(q) > 1 {
			broken = stream.Send(&triadv1.SessionResponse{Batch: q}) != nil
			continue
		}
		for _, r := range q {
			if broken = stream.Send(r) != nil; broken {
				break
			}
		}
	}
}

// sessionCall runs one call of a Session stream. The answer to a call the
// client cancelled is sent too: the client drops it.
func (l *licensingService) sessionCall(ctx context.Context, req *triadv1.SessionRequest) *triadv1.SessionResponse {
	id := req.GetCallId()
	// What the unary interceptors do for every licensing call.
	if f := l.s.diskFault(); f != nil {
		return sessionError(id, f.status())
	}
	if err := l.s.haltedError(); err != nil {
		return sessionError(id, err)
	}
	var (
		out = &triadv1.SessionResponse{CallId: id}
		err error
	)
	switch c := req.GetCall().(type) {
	case *triadv1.SessionRequest_Checkout:
		var r *triadv1.CheckoutResponse
		if r, err = l.Checkout(ctx, c.Checkout); err == nil {
			out.Result = &triadv1.SessionResponse_Checkout{Checkout: r}
		}
	case *triadv1.SessionRequest_Renew:
		var r *triadv1.RenewResponse
		if r, err = l.Renew(ctx, c.Renew); err == nil {
			out.Result = &triadv1.SessionResponse_Renew{Renew: r}
		}
	case *triadv1.SessionRequest_Release:
		var r *triadv1.ReleaseResponse
		if r, err = l.Release(ctx, c.Release); err == nil {
			out.Result = &triadv1.SessionResponse_Release{Release: r}
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "session call %d carries no checkout, renew or release: this member knows only those three", id)
	}
	if err != nil {
		return sessionError(id, err)
	}
	return out
}

// sessionError carries err's full status (code, message, details).
func sessionError(id uint64, err error) *triadv1.SessionResponse {
	b, mErr := proto.Marshal(status.Convert(err).Proto())
	if mErr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, err.Error()).Proto())
	}
	return &triadv1.SessionResponse{CallId: id, Result: &triadv1.SessionResponse_Error{Error: b}}
}
