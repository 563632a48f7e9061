package client

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// sessionRetry is how long a member that answered Session with
// UNIMPLEMENTED (an older triadd) is called with unary calls only before
// the stream is tried again (the member may have been upgraded).
const sessionRetry = 5 * time.Minute

// sessionClient is one member's Licensing client: Checkout, Renew and
// Release go over one long-lived Licensing.Session stream when the member
// speaks it (fewer per-call costs on both sides: issue 15), and over the
// unary calls otherwise; everything else is unary. Errors are those of the
// unary calls (the member sends each call's full status), so the retry and
// failover logic of memberSet is the same on both paths. A call that finds
// the connection not ready goes unary (the unary call's own wait for the
// connection applies); the stream is opened once it is.
type sessionClient struct {
	triadv1.LicensingClient // the unary calls
	conn                    *grpc.ClientConn
	addr                    string
	logger                  *slog.Logger

	mu         sync.Mutex
	st         *sessionStream // nil until opened, and after it broke
	unaryUntil time.Time      // the member answered UNIMPLEMENTED: unary until then
	nextID     uint64
	closed     bool
}

// sessionStream is one open Session stream and the calls waiting on it.
// One goroutine sends (write): a member that stops reading (paused) blocks
// it on HTTP/2 flow control, not the callers, who still see their context
// end.
type sessionStream struct {
	stream  triadv1.Licensing_SessionClient
	cancel  context.CancelFunc
	out     chan *triadv1.SessionRequest
	mu      sync.Mutex
	pending map[uint64]chan *triadv1.SessionResponse
	done    chan struct{} // closed when the stream ended; err says why
	err     error
	batches atomic.Bool // the member takes batched calls (its header said so)
}

// errUseUnary: this call must go over the unary RPC (no stream now).
var errUseUnary = errors.New("triad: no session stream")

func newSessionClient(conn *grpc.ClientConn, addr string, logger *slog.Logger) *sessionClient {
	return &sessionClient{LicensingClient: triadv1.NewLicensingClient(conn), conn: conn, addr: addr, logger: logger}
}

func (c *sessionClient) Checkout(ctx context.Context, in *triadv1.CheckoutRequest, opts ...grpc.CallOption) (*triadv1.CheckoutResponse, error) {
	r, err := c.call(ctx, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Checkout{Checkout: in}})
	if errors.Is(err, errUseUnary) {
		return c.LicensingClient.Checkout(ctx, in, opts...)
	}
	if err != nil {
		return nil, err
	}
	if out := r.GetCheckout(); out != nil {
		return out, nil
	}
	return nil, grpcstatus.Errorf(codes.Internal, "member %s answered a session checkout with something else", c.addr)
}

func (c *sessionClient) Renew(ctx context.Context, in *triadv1.RenewRequest, opts ...grpc.CallOption) (*triadv1.RenewResponse, error) {
	r, err := c.call(ctx, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Renew{Renew: in}})
	if errors.Is(err, errUseUnary) {
		return c.LicensingClient.Renew(ctx, in, opts...)
	}
	if err != nil {
		return nil, err
	}
	if out := r.GetRenew(); out != nil {
		return out, nil
	}
	return nil, grpcstatus.Errorf(codes.Internal, "member %s answered a session renew with something else", c.addr)
}

func (c *sessionClient) Release(ctx context.Context, in *triadv1.ReleaseRequest, opts ...grpc.CallOption) (*triadv1.ReleaseResponse, error) {
	r, err := c.call(ctx, &triadv1.SessionRequest{Call: &triadv1.SessionRequest_Release{Release: in}})
	if errors.Is(err, errUseUnary) {
		return c.LicensingClient.Release(ctx, in, opts...)
	}
	if err != nil {
		return nil, err
	}
	if out := r.GetRelease(); out != nil {
		return out, nil
	}
	return nil, grpcstatus.Errorf(codes.Internal, "member %s answered a session release with something else", c.addr)
}

// stream returns the open stream, opening it when the connection is ready;
// nil when this call must go unary.
func (c *sessionClient) stream() (*sessionStream, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || time.Now().Before(c.unaryUntil) {
		return nil, 0
	}
	c.nextID++
	if c.st != nil {
		return c.st, c.nextID
	}
	if c.conn.GetState() != connectivity.Ready {
		c.conn.Connect()
		return nil, 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Ask for batched answers; the member's response header says whether
	// it takes batched calls (write).
	ctx = metadata.AppendToOutgoingContext(ctx, sessionBatchHeader, "1")
	s, err := triadv1.NewLicensingClient(c.conn).Session(ctx)
	if err != nil {
		cancel()
		return nil, 0
	}
	st := &sessionStream{stream: s, cancel: cancel, out: make(chan *triadv1.SessionRequest, 64),
		pending: map[uint64]chan *triadv1.SessionResponse{}, done: make(chan struct{})}
	c.st = st
	go c.read(st)
	go st.write()
	return st, c.nextID
}

// sessionBatchHeader: in the request header, this client takes batched
// answers; in the member's response header, the member takes batched calls.
const sessionBatchHeader = "triad-session-batch"

// maxSessionBatch bounds the calls sent in one message (the member takes
// up to 1,024).
const maxSessionBatch = 64

// write sends the queued requests until the stream ends: the calls that
// are ready together go in one message once the member has said it takes
// batches, one by one before and otherwise. A failed Send ends the
// stream: read then sees why.
func (st *sessionStream) write() {
	q := make([]*triadv1.SessionRequest, 0, maxSessionBatch)
	for {
		select {
		case <-st.done:
			return
		case req := <-st.out:
			q = append(q[:0], req)
		}
		// Let the calls woken with this one (answers that came together)
		// queue behind it first.
		runtime.Gosched()
	drain:
		for len(q) < maxSessionBatch {
			select {
			case req := <-st.out:
				q = append(q, req)
			default:
				break drain
			}
		}
		if len(q) > 1 && st.batches.Load() {
			if err := st.stream.Send(&triadv1.SessionRequest{Batch: q}); err != nil {
				st.cancel()
				return
			}
			q = make([]*triadv1.SessionRequest, 0, maxSessionBatch) // the sent message keeps q
			continue
		}
		for _, req := range q {
			if err := st.stream.Send(req); err != nil {
				st.cancel()
				return
			}
		}
	}
}

// enqueue hands req to the sender; false when ctx or the stream ended first.
func (st *sessionStream) enqueue(ctx context.Context, req *triadv1.SessionRequest) bool {
	select {
	case st.out <- req:
		return true
	case <-st.done:
	case <-ctx.Done():
	}
	return false
}

// read delivers the answers of st until it ends. It first waits for the
// member's response header, which says whether it takes batched calls:
// triadd sends it when the stream opens, an older member with its first
// answer (until then the writer sends calls one by one, never waiting).
func (c *sessionClient) read(st *sessionStream) {
	if md, err := st.stream.Header(); err == nil && slices.Contains(md.Get(sessionBatchHeader), "1") {
		st.batches.Store(true)
	}
	for {
		r, err := st.stream.Recv()
		if err != nil {
			st.mu.Lock()
			st.err = err
			st.mu.Unlock()
			close(st.done)
			st.cancel()
			c.mu.Lock()
			if c.st == st {
				c.st = nil
				if grpcstatus.Code(err) == codes.Unimplemented {
					c.unaryUntil = time.Now().Add(sessionRetry)
					c.logger.Debug("triad member does not speak Session streams; using unary calls", "member", c.addr)
				}
			}
			c.mu.Unlock()
			return
		}
		if b := r.GetBatch(); len(b) > 0 {
			for _, one := range b {
				st.deliver(one)
			}
			continue
		}
		st.deliver(r)
	}
}

// deliver hands r to the call waiting for it, if any still is.
func (st *sessionStream) deliver(r *triadv1.SessionResponse) {
	st.mu.Lock()
	ch, ok := st.pending[r.GetCallId()]
	delete(st.pending, r.GetCallId())
	st.mu.Unlock()
	if ok {
		ch <- r // buffered: never blocks
	}
}

// call sends req on the stream and waits for its answer, the end of the
// stream, or the end of ctx.
func (c *sessionClient) call(ctx context.Context, req *triadv1.SessionRequest) (*triadv1.SessionResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, grpcstatus.FromContextError(err).Err()
	}
	st, id := c.stream()
	if st == nil {
		return nil, errUseUnary
	}
	req.CallId = id
	if dl, ok := ctx.Deadline(); ok {
		ms := (time.Until(dl) + time.Millisecond - 1) / time.Millisecond
		req.TimeoutMs = uint32(max(1, min(ms, 1<<31)))
	}
	ch := make(chan *triadv1.SessionResponse, 1)
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return nil, c.streamErr(st)
	}
	st.pending[id] = ch
	st.mu.Unlock()
	if !st.enqueue(ctx, req) {
		st.mu.Lock()
		delete(st.pending, id)
		st.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return nil, grpcstatus.FromContextError(err).Err() // never sent
		}
		return nil, c.streamErr(st)
	}
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			var s status.Status
			if err := proto.Unmarshal(e, &s); err != nil {
				return nil, grpcstatus.Errorf(codes.Internal, "member %s sent an unreadable error: %v", c.addr, err)
			}
			return nil, grpcstatus.FromProto(&s).Err()
		}
		return r, nil
	case <-st.done:
		return nil, c.streamErr(st)
	case <-ctx.Done():
		st.mu.Lock()
		delete(st.pending, id)
		st.mu.Unlock()
		// Tell the member, best effort: dropped when the queue is full.
		select {
		case st.out <- &triadv1.SessionRequest{CallId: id, Call: &triadv1.SessionRequest_Cancel{Cancel: true}}:
		default:
		}
		return nil, grpcstatus.FromContextError(ctx.Err()).Err()
	}
}

// streamErr is the error of a call cut off by the end of its stream: a
// member that does not know Session (UNIMPLEMENTED) never saw the call, so
// it goes unary; otherwise the call got no answer (UNAVAILABLE), which the
// caller retries with the same request id, as after a broken connection.
func (c *sessionClient) streamErr(st *sessionStream) error {
	st.mu.Lock()
	err := st.err
	st.mu.Unlock()
	s := grpcstatus.Convert(err)
	if s.Code() == codes.Unimplemented {
		return errUseUnary
	}
	if s.Code() == codes.Unavailable || s.Code() == codes.FailedPrecondition {
		return err // a member going away, or halted: as the unary call says
	}
	return grpcstatus.Errorf(codes.Unavailable, "member %s: session stream ended: %s", c.addr, s.Message())
}

// close ends the stream (the connection is closed by the caller).
func (c *sessionClient) close() {
	c.mu.Lock()
	c.closed = true
	st := c.st
	c.st = nil
	c.mu.Unlock()
	if st != nil {
		st.cancel()
	}
}
