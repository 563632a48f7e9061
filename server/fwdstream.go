package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/peerpb"
)

// fwdUnaryRetry is how long a leader that answered ForwardStream with
// UNIMPLEMENTED (an older triadd) gets unary Forward calls before the
// stream is tried again.
const fwdUnaryRetry = 5 * time.Minute

// forwarder sends a follower's forwarded batches to the leader over one
// long-lived Peer.ForwardStream (issue 15): no HTTP/2 stream, header block
// and handler set-up per batch, so batches can go as they form instead of
// one call at a time. A leader that does not know the stream gets unary
// Forward calls.
type forwarder struct {
	mu         sync.Mutex
	st         *fwdStream
	unaryUntil map[string]time.Time // leader address → unary calls until then
	nextID     uint64
}

// fwdStream is one open stream to one leader and the calls waiting on it.
type fwdStream struct {
	addr    string
	stream  peerpb.Peer_ForwardStreamClient
	cancel  context.CancelFunc
	sendMu  sync.Mutex
	mu      sync.Mutex
	pending map[uint64]*fwdCall // nil once the stream ended; err says why
	err     error
}

// fwdCall is one batch waiting for its answer on a stream. Whoever takes
// it from pending (the reader with the answer, the reader at the stream's
// end, the deadline timer) calls then, so it is called exactly once.
type fwdCall struct {
	then  func(*peerpb.ForwardResponse, error)
	timer *time.Timer
}

// take removes and returns call id, or nil when it was already taken.
func (st *fwdStream) take(id uint64) *fwdCall {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.pending[id]
	delete(st.pending, id)
	return c
}

// errForwardUnary: this batch must go as a unary Forward call.
var errForwardUnary = fmt.Errorf("leader does not take forwarding streams")

// forwardThen sends req to the leader at addr and hands its answer, or the
// error, to then by deadline (at most applyTimeout away): on the stream's
// reader goroutine (or its deadline timer's), so that no goroutine waits
// for the answer only to pass it on, or, for a leader that does not take
// the stream, on a goroutine making the unary call. then must not block.
// Errors are the unary call's.
func (s *Server) forwardThen(addr string, req *peerpb.ForwardRequest, deadline time.Time, then func(*peerpb.ForwardResponse, error)) {
	if limit := time.Now().Add(applyTimeout); deadline.IsZero() || deadline.After(limit) {
		deadline = limit
	}
	unary := func() {
		s.metrics.forwardedBatch("unary")
		go func() {
			ctx, cancel := s.forwardContext(deadline)
			defer cancel()
			then(s.peerClient(addr).Forward(ctx, req))
		}()
	}
	err := s.forwardOnStream(addr, req, deadline, func(resp *peerpb.ForwardResponse, err error) {
		if err == errForwardUnary { // the leader turned out older: it never saw the batch
			unary()
			return
		}
		then(resp, err)
	})
	switch {
	case err == errForwardUnary:
		unary()
	case err != nil:
		then(nil, err)
	}
}

// forwardOnStream sends req on the stream to addr; nil means then will get
// the answer or the error, exactly once, by deadline.
func (s *Server) forwardOnStream(addr string, req *peerpb.ForwardRequest, deadline time.Time, then func(*peerpb.ForwardResponse, error)) error {
	st, id, err := s.fwd.stream(s, addr)
	if err != nil {
		return err
	}
	c := &fwdCall{then: then}
	var sending atomic.Bool
	sending.Store(true)
	st.mu.Lock()
	if st.pending == nil {
		st.mu.Unlock()
		return s.fwd.ended(st)
	}
	st.pending[id] = c
	c.timer = time.AfterFunc(time.Until(deadline), func() {
		// A leader that stops reading (paused) would block Send on flow
		// control past every deadline, with the batches behind it: past
		// this one's, the stream is cut, which fails its batches as
		// retryable, and the next batch opens a new one.
		if sending.Load() {
			st.cancel()
		}
		if st.take(id) != nil {
			then(nil, status.Error(codes.DeadlineExceeded, "forwarded batch not answered in time"))
		}
	})
	st.mu.Unlock()
	st.sendMu.Lock()
	err = st.stream.Send(&peerpb.ForwardStreamRequest{Id: id, Forward: req})
	st.sendMu.Unlock()
	sending.Store(false)
	if err != nil {
		st.cancel() // the reader sees why and fails the calls waiting, this one too
	}
	return nil
}

// stream returns the open stream to addr, opening it (and closing one to a
// former leader) if needed, and a fresh call id; errForwardUnary when addr
// gets unary calls.
func (f *forwarder) stream(s *Server, addr string) (*fwdStream, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Now().Before(f.unaryUntil[addr]) {
		return nil, 0, errForwardUnary
	}
	f.nextID++
	if f.st != nil && f.st.addr == addr {
		return f.st, f.nextID, nil
	}
	if f.st != nil {
		f.st.cancel() // a former leader's
		f.st = nil
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, s.cfg.Name)
	stream, err := s.peerClient(addr).ForwardStream(ctx)
	if err != nil {
		cancel()
		return nil, 0, forwardError(addr, err)
	}
	st := &fwdStream{addr: addr, stream: stream, cancel: cancel,
		pending: map[uint64]*fwdCall{}}
	f.st = st
	go f.read(s, st)
	return st, f.nextID, nil
}

// read delivers st's answers until it ends, then fails the calls waiting.
func (f *forwarder) read(s *Server, st *fwdStream) {
	for {
		r, err := st.stream.Recv()
		if err != nil {
			st.mu.Lock()
			st.err = err
			calls := st.pending
			st.pending = nil
			st.mu.Unlock()
			st.cancel()
			f.mu.Lock()
			if f.st == st {
				f.st = nil
			}
			if status.Code(err) == codes.Unimplemented {
				if f.unaryUntil == nil {
					f.unaryUntil = map[string]time.Time{}
				}
				f.unaryUntil[st.addr] = time.Now().Add(fwdUnaryRetry)
			}
			f.mu.Unlock()
			endErr := f.ended(st)
			for _, c := range calls {
				c.timer.Stop()
				c.then(nil, endErr)
			}
			return
		}
		c := st.take(r.GetId())
		if c == nil {
			continue // its deadline passed: already failed
		}
		c.timer.Stop()
		if e := r.GetError(); e != nil {
			var sp spb.Status
			if err := proto.Unmarshal(e, &sp); err != nil {
				c.then(nil, fmt.Errorf("%w: forward to %s: unreadable error: %v", errRetry, st.addr, err))
				continue
			}
			c.then(nil, status.FromProto(&sp).Err())
			continue
		}
		s.metrics.forwardedBatch("stream")
		c.then(r.GetForward(), nil)
	}
}

// ended is the error of a call cut off by the end of its stream: a leader
// that does not know the stream never saw it (unary then); otherwise it
// may or may not have run, and the ops are retried with their request ids
// (route, sessionThen), as after a broken unary call.
func (f *forwarder) ended(st *fwdStream) error {
	st.mu.Lock()
	err := st.err
	st.mu.Unlock()
	if status.Code(err) == codes.Unimplemented {
		return errForwardUnary
	}
	return fmt.Errorf("%w: forward to %s: stream ended: %v", errRetry, st.addr, status.Convert(err).Message())
}
