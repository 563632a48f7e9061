package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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

// Session serves a client's checkouts, renewals and releases over one
// stream (issue 15). Each call runs the unary handler of the same name,
// under its own deadline and after the same guards the unary interceptors
// apply (disk fence, halted for an upgrade), so it is answered exactly as
// the unary call would be: only after commit, idempotent by request id,
// with the FSM's capacity checks.
func (l *licensingService) Session(stream triadv1.Licensing_SessionServer) error {
	ctx := stream.Context()
	var (
		sendMu sync.Mutex
		mu     sync.Mutex
		calls  = map[uint64]context.CancelFunc{}
		wg     sync.WaitGroup
		slots  = make(chan struct{}, sessionMaxInFlight)
	)
	defer func() {
		// The stream ended: abandon the calls in flight (their answers
		// cannot be delivered) and wait for them.
		mu.Lock()
		for _, cancel := range calls {
			cancel()
		}
		mu.Unlock()
		wg.Wait()
	}()
	send := func(r *triadv1.SessionResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		// An error means the stream is gone; Recv reports it.
		_ = stream.Send(r)
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the client closed the stream, or it broke
		}
		id := req.GetCallId()
		if req.GetCancel() {
			mu.Lock()
			if cancel, ok := calls[id]; ok {
				cancel()
			}
			mu.Unlock()
			continue
		}
		mu.Lock()
		_, dup := calls[id]
		mu.Unlock()
		if dup {
			send(sessionError(id, status.Errorf(codes.InvalidArgument, "session call id %d is already in flight on this stream: use a new id per call", id)))
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		cctx, cancel := context.WithCancel(ctx)
		if t := req.GetTimeoutMs(); t > 0 {
			cctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Millisecond)
		}
		mu.Lock()
		calls[id] = cancel
		mu.Unlock()
		wg.Add(1)
		l.s.callWorkers.run(func() {
			defer wg.Done()
			resp := l.sessionCall(cctx, req)
			mu.Lock()
			delete(calls, id)
			mu.Unlock()
			cancel()
			<-slots
			send(resp)
		})
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
