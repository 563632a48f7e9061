package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/triadlm/triad/proto/triadv1"
)

// memberSet is one group of interchangeable servers: the three members of
// the cluster, or the backup server(s). Any of them accepts any call.
type memberSet struct {
	kind    string // "cluster" or "backup", for logs and errors
	members []member
	byAddr  map[string]int // configured address → index, to follow leader hints
	logger  *slog.Logger

	mu      sync.Mutex
	current int // member that answered last (or the leader hint); tried first
	closed  bool
}

type member struct {
	addr    string
	conn    *grpc.ClientConn
	rpc     triadv1.LicensingClient
	session *sessionClient // rpc, when Session streams are used
}

// dialSet makes one lazily connecting grpc.ClientConn per address, so a
// member that is down does not make it fail. With sessions, checkouts,
// renewals and releases go over one Session stream per member (session.go).
func dialSet(kind string, addrs []string, dialOpts []grpc.DialOption, logger *slog.Logger, sessions bool) (*memberSet, error) {
	s := &memberSet{kind: kind, byAddr: make(map[string]int, len(addrs)), logger: logger}
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			s.close()
			return nil, fmt.Errorf("triad: empty %s address", kind)
		}
		if _, dup := s.byAddr[a]; dup {
			s.close()
			return nil, fmt.Errorf("triad: %s address %q given twice", kind, a)
		}
		conn, err := grpc.NewClient(a, dialOpts...)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("triad: %s %s: %w", kind, a, err)
		}
		s.byAddr[a] = len(s.members)
		m := member{addr: a, conn: conn, rpc: triadv1.NewLicensingClient(conn)}
		if sessions {
			m.session = newSessionClient(conn, a, logger)
			m.rpc = m.session
		}
		s.members = append(s.members, m)
	}
	return s, nil
}

func (s *memberSet) close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	var errs []error
	for _, m := range s.members {
		if m.session != nil {
			m.session.close()
		}
		errs = append(errs, m.conn.Close())
	}
	return errors.Join(errs...)
}

// attemptFunc performs one RPC against one member and returns the leader
// hint of the response ("" when it has none).
type attemptFunc func(ctx context.Context, rpc triadv1.LicensingClient) (leader string, err error)

// noAnswer is returned when no member gave a definite answer before the
// context ended. It wraps the context error, so errors.Is(err,
// context.DeadlineExceeded) holds, and names the last member error.
type noAnswer struct {
	kind, op string
	ctxErr   error
	last     error
}

func (e *noAnswer) Error() string {
	if e.last == nil {
		return fmt.Sprintf("triad: %s: %v", e.op, e.ctxErr)
	}
	return fmt.Sprintf("triad: %s: no %s member answered: %v (last error: %v)", e.op, e.kind, e.ctxErr, e.last)
}

func (e *noAnswer) Unwrap() error { return e.ctxErr }

// unanswered reports whether err means "nobody answered" rather than a
// definite answer.
func unanswered(err error) bool {
	var na *noAnswer
	return errors.As(err, &na)
}

// Kinds of call, for outcome: whether RESOURCE_EXHAUSTED is a denial.
const (
	grantCall = true  // Checkout, Borrow: RESOURCE_EXHAUSTED is "no seat"
	plainCall = false // Renew, Release, ReturnBorrow, Features: it is overload
)

// call runs attempt against the preferred member and then, while members
// give no answer (see outcome), against the next ones in turn until one
// answers or ctx is done; each attempt is bounded by timeout. After a full
// pass over the members without an answer it backs off (50 ms doubling to
// 1 s) so that a cluster without a leader is not hammered. A definite answer
// is returned at once, classified. A member fault (INTERNAL, a protocol
// version the member does not speak…) is tried on the other members too,
// and returned, classified, at the end of the pass (or when ctx ends
// first) if none of them answered.
func (s *memberSet) call(ctx context.Context, op string, timeout time.Duration, grants bool, attempt attemptFunc) error {
	s.mu.Lock()
	idx, closed := s.current, s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	n := len(s.members)
	backoff := backoffStart
	var lastErr, fault error // fault: the last member fault of this pass
	// The caller's context ended: a member fault seen in this pass is the
	// answer, else nobody answered.
	ended := func(last error) error {
		if fault != nil {
			return classify(op, fault)
		}
		return &noAnswer{s.kind, op, ctx.Err(), last}
	}
	for failures := 0; ; {
		if ctx.Err() != nil {
			return ended(lastErr)
		}
		m := s.members[idx]
		actx, cancel := context.WithTimeout(ctx, timeout)
		leader, err := attempt(actx, m.rpc)
		cancel()
		if err == nil {
			s.answered(idx, leader)
			return nil
		}
		if ctx.Err() != nil { // the caller's deadline, not the member's answer
			return ended(err)
		}
		kind := outcome(err, grants)
		if kind == definite {
			s.answered(idx, "")
			return classify(op, err)
		}
		lastErr = err
		what := "triad member did not answer, trying the next"
		if kind == memberFault {
			fault = err
			what = "triad member failed the call, trying the next"
		}
		s.logger.Debug(what, "op", op, "set", s.kind, "member", m.addr, "err", err)
		idx = s.failed(idx)
		if failures++; failures%n == 0 {
			if fault != nil {
				return classify(op, fault)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ended(lastErr)
			case <-t.C:
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
}

// answered remembers the member to try first next time: the leader when the
// response names one we know (saving the follower→leader hop), else the
// member that just answered.
func (s *memberSet) answered(idx int, leader string) {
	if j, ok := s.byAddr[leader]; ok {
		idx = j
	}
	s.mu.Lock()
	s.current = idx
	s.mu.Unlock()
}

// failed moves the shared preference past a failed member, unless a
// concurrent call already moved it, and returns the member this call tries
// next (always the next one, so one call visits every member in turn).
func (s *memberSet) failed(idx int) int {
	next := (idx + 1) % len(s.members)
	s.mu.Lock()
	if s.current == idx {
		s.current = next
	}
	s.mu.Unlock()
	return next
}

// The RPCs, each as one call over a member set. sent is the send time of
// the FIRST attempt (monotonic), the base of the lease's view: a retry that
// the cluster answers may carry the work of an earlier attempt (a checkout
// granted by it; a renewal the server applied then), so the answered
// attempt's send time could be later than the server's own base.

// checkout returns the grant: the lease, its secret and the send time of
// the first attempt. A retry that the cluster resolves to an earlier grant
// of the request id gets that grant's secret too.
func (s *memberSet) checkout(ctx context.Context, timeout time.Duration, msg *triadv1.CheckoutRequest) (g *grant, err error) {
	g, q, err := s.checkoutOrQueue(ctx, timeout, msg)
	if err == nil && q != nil {
		err = fmt.Errorf("triad: checkout %s: %s answered that the request waits in the queue", msg.GetFeature(), s.kind)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// checkoutOrQueue sends a checkout; a queued checkout (msg.Queue) may be
// answered with its place in the queue instead of a grant.
func (s *memberSet) checkoutOrQueue(ctx context.Context, timeout time.Duration, msg *triadv1.CheckoutRequest) (g *grant, q *triadv1.CheckoutResponse, err error) {
	var first time.Time
	err = s.call(ctx, "checkout "+msg.GetFeature(), timeout, grantCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		if first.IsZero() {
			first = time.Now()
		}
		resp, err := rpc.Checkout(ctx, msg)
		if err != nil {
			return "", err
		}
		g, q = nil, nil
		if resp.GetQueued() && resp.GetLease() == nil {
			q = resp
		} else {
			g = &grant{info: resp.GetLease(), secret: resp.GetLeaseSecret(), renewed: first}
		}
		return resp.GetLeader(), nil
	})
	if err == nil && q == nil && g.info == nil {
		err = fmt.Errorf("triad: checkout %s: %s answered without a lease", msg.GetFeature(), s.kind)
	}
	if err != nil {
		return nil, nil, err
	}
	return g, q, nil
}

// cancelQueued takes a queued checkout out of its queue (Removed false
// when it was not waiting: granted meanwhile, or already gone).
func (s *memberSet) cancelQueued(ctx context.Context, timeout time.Duration, protocol uint32, clientID, requestID string) (resp *triadv1.CancelQueuedResponse, err error) {
	err = s.call(ctx, "leave queue", timeout, plainCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		resp, err = rpc.CancelQueued(ctx, &triadv1.CancelQueuedRequest{ProtocolVersion: protocol, RequestId: requestID, ClientId: clientID})
		return "", err
	})
	return resp, err
}

// maxRefsPerCall bounds the leases of one Renew or Release call, so that a
// process holding many leases stays under the server's per-request limits
// (10,000 ids and 64 KiB encoded; a lease id with its 16-byte secret takes
// about 30 bytes).
var maxRefsPerCall = 1000

// chunks splits refs into calls of at most maxRefsPerCall leases.
func chunks(refs []leaseRef) [][]leaseRef {
	var out [][]leaseRef
	for len(refs) > maxRefsPerCall {
		out, refs = append(out, refs[:maxRefsPerCall]), refs[maxRefsPerCall:]
	}
	return append(out, refs)
}

// renew renews the leases, in several calls when there are many; sent is
// the send time of the first attempt of the earliest call, so the leases' view of the server
// never outlasts it.
func (s *memberSet) renew(ctx context.Context, timeout time.Duration, protocol uint32, refs []leaseRef) (resp *triadv1.RenewResponse, sent time.Time, err error) {
	resp = &triadv1.RenewResponse{}
	for i, part := range chunks(refs) {
		ids, secrets := splitRefs(part)
		idle := idleOf(part)
		err = s.call(ctx, "renew", timeout, plainCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
			if i == 0 && sent.IsZero() {
				sent = time.Now() // the first attempt of the first call
			}
			r, err := rpc.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: protocol, LeaseIds: ids, LeaseSecrets: secrets, IdleMs: idle})
			if err != nil {
				return "", err
			}
			resp.Results = append(resp.Results, r.GetResults()...)
			resp.Leader = r.GetLeader()
			return r.GetLeader(), nil
		})
		if err != nil {
			return nil, sent, err
		}
	}
	return resp, sent, nil
}

// release frees the leases, sending each one's secret. An attempt that gets
// no answer (a paused or cut-off member) is retried on the next member, as
// every call is. The answer is read: a lease already gone (expired,
// released) is the outcome wanted, but a lease the cluster refused to
// release (a wrong secret) still holds its seat, which the caller is told.
func (s *memberSet) release(ctx context.Context, timeout time.Duration, protocol uint32, refs []leaseRef) error {
	var refused []error
	for _, part := range chunks(refs) {
		ids, secrets := splitRefs(part)
		var resp *triadv1.ReleaseResponse
		err := s.call(ctx, "release", timeout, plainCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
			r, err := rpc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: protocol, LeaseIds: ids, LeaseSecrets: secrets})
			resp = r
			return "", err
		})
		if err != nil {
			return err
		}
		for _, r := range resp.GetResults() {
			if !r.GetReleased() && !releaseGone(r.GetError()) {
				refused = append(refused, fmt.Errorf("triad: release: %s", r.GetError()))
			}
		}
	}
	return errors.Join(refused...)
}

// releaseGone: a release result's error says the lease was already gone
// (the server's "lease N not found: it expired or was released").
func releaseGone(msg string) bool {
	return msg == "" || strings.Contains(msg, "not found")
}

// leaseRef names a server lease with its secret: every renewal and release
// of the lease must carry the secret its grant came with.
type leaseRef struct {
	id     uint64
	secret []byte
	// idleMs is how long the product has been idle on the lease
	// (Lease.SetIdle), sent with renewals; 0 when active.
	idleMs int64
}

// idleOf is the idle_ms list of a renewal: nil when every lease is active,
// so renewals of products that never report idleness stay as they were.
func idleOf(refs []leaseRef) []int64 {
	var out []int64
	for i, r := range refs {
		if r.idleMs > 0 {
			if out == nil {
				out = make([]int64, len(refs))
			}
			out[i] = r.idleMs
		}
	}
	return out
}

func splitRefs(refs []leaseRef) (ids []uint64, secrets [][]byte) {
	ids, secrets = make([]uint64, len(refs)), make([][]byte, len(refs))
	for i, r := range refs {
		ids[i], secrets[i] = r.id, r.secret
	}
	return ids, secrets
}
