package server

import (
	"context"
	"fmt"
	"sync"
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
	pending map[uint64]chan *peerpb.ForwardStreamResponse
	done    chan struct{} // closed when the stream ended; err says why
	err     error
}

// errForwardUnary: this batch must go as a unary Forward call.
var errForwardUnary = fmt.Errorf("leader does not take forwarding streams")

// forward sends req to the leader at addr and waits for its answer until
// deadline (at most applyTimeout away). Errors are the unary call's.
func (s *Server) forward(addr string, req *peerpb.ForwardRequest, deadline time.Time) (*peerpb.ForwardResponse, error) {
	resp, err := s.forwardOnStream(addr, req, deadline)
	if err != errForwardUnary {
		return resp, err
	}
	s.metrics.forwardedBatch("unary")
	ctx, cancel := s.forwardContext(deadline)
	defer cancel()
	return s.peerClient(addr).Forward(ctx, req)
}

func (s *Server) forwardOnStream(addr string, req *peerpb.ForwardRequest, deadline time.Time) (*peerpb.ForwardResponse, error) {
	st, id, err := s.fwd.stream(s, addr)
	if err != nil {
		return nil, err
	}
	ch := make(chan *peerpb.ForwardStreamResponse, 1)
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return nil, s.fwd.ended(st)
	}
	st.pending[id] = ch
	st.mu.Unlock()
	if limit := time.Now().Add(applyTimeout); deadline.IsZero() || deadline.After(limit) {
		deadline = limit
	}
	// A leader that stops reading (paused) would block Send on flow
	// control past every deadline, with the batches behind it: past this
	// one's, the stream is cut, which fails its batches as retryable, and
	// the next batch opens a new one.
	watchdog := time.AfterFunc(time.Until(deadline), st.cancel)
	st.sendMu.Lock()
	err = st.stream.Send(&peerpb.ForwardStreamRequest{Id: id, Forward: req})
	st.sendMu.Unlock()
	watchdog.Stop()
	if err != nil {
		st.cancel() // the reader sees why and fails the calls waiting
		<-st.done
		return nil, s.fwd.ended(st)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			var sp spb.Status
			if err := proto.Unmarshal(e, &sp); err != nil {
				return nil, fmt.Errorf("%w: forward to %s: unreadable error: %v", errRetry, addr, err)
			}
			return nil, status.FromProto(&sp).Err()
		}
		s.metrics.forwardedBatch("stream")
		return r.GetForward(), nil
	case <-st.done:
		return nil, s.fwd.ended(st)
	case <-timer.C:
		st.mu.Lock()
		delete(st.pending, id)
		st.mu.Unlock()
		return nil, status.Error(codes.DeadlineExceeded, "forwarded batch not answered in time")
	case <-s.ctx.Done():
		return nil, status.Error(codes.Unavailable, "member is shutting down")
	}
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
		pending: map[uint64]chan *peerpb.ForwardStreamResponse{}, done: make(chan struct{})}
	f.st = st
	go f.read(st)
	return st, f.nextID, nil
}

// read delivers st's answers until it ends, then fails the calls waiting.
func (f *forwarder) read(st *fwdStream) {
	for {
		r, err := st.stream.Recv()
		if err != nil {
			st.mu.Lock()
			st.err = err
			st.pending = nil
			st.mu.Unlock()
			close(st.done)
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
			return
		}
		st.mu.Lock()
		ch, ok := st.pending[r.GetId()]
		delete(st.pending, r.GetId())
		st.mu.Unlock()
		if ok {
			ch <- r // buffered: never blocks
		}
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
