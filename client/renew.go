package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// renewer is the one goroutine per Client that keeps every lease alive
// with one batched Renew call per side per round. The cluster commits each
// Renew through Raft, so one call per lease would cost one log entry per
// lease; batching is a design rule, not an optimisation. Time-driven state
// changes (Held → Grace → Lost) do not wait for rounds: each Lease has its
// own timer.
type renewer struct {
	c      *Client
	ctx    context.Context // cancelled by stop; bounds the rounds in flight
	cancel context.CancelFunc
	kick   chan struct{}      // the lease set changed: recompute the schedule
	force  chan chan struct{} // tests: run a round now, close the reply when done
	done   chan struct{}

	addMu   sync.Mutex // serialises add, so a reused request id yields one Lease
	mu      sync.Mutex
	leases  map[*Lease]struct{}
	stopped bool
}

func newRenewer(c *Client) *renewer {
	ctx, cancel := context.WithCancel(context.Background())
	return &renewer{
		c: c, ctx: ctx, cancel: cancel,
		kick:   make(chan struct{}, 1),
		force:  make(chan chan struct{}),
		done:   make(chan struct{}),
		leases: make(map[*Lease]struct{}),
	}
}

// add puts a lease in the renewal set. A checkout that the cluster resolved
// to a lease already held (the caller reused a request id) returns the held
// Lease, so there is one object per lease id; the duplicate is discarded
// without a state change.
func (r *renewer) add(l *Lease) (*Lease, error) {
	r.addMu.Lock()
	defer r.addMu.Unlock()
	id := l.clusterID()
	for _, old := range r.snapshot() {
		if id != 0 && old.clusterID() == id {
			l.mu.Lock()
			l.state = Released
			l.timer.Stop()
			l.mu.Unlock()
			return old, nil
		}
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.leases[l] = struct{}{}
	r.mu.Unlock()
	r.poke()
	return l, nil
}

// remove takes a lease out of the renewal set and reports whether it was in
// it: the one point of decision between Release, loss and Close.
func (r *renewer) remove(l *Lease) bool {
	r.mu.Lock()
	_, ok := r.leases[l]
	delete(r.leases, l)
	r.mu.Unlock()
	if ok {
		r.poke()
	}
	return ok
}

func (r *renewer) snapshot() []*Lease {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Lease, 0, len(r.leases))
	for l := range r.leases {
		out = append(out, l)
	}
	return out
}

func (r *renewer) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop ends the goroutine, waits for it, and marks the leases still held
// as lost: nothing renews them any more. It reports false when already
// stopped.
func (r *renewer) stop() bool {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return false
	}
	r.stopped = true
	left := r.leases
	r.leases = map[*Lease]struct{}{}
	r.mu.Unlock()
	r.cancel()
	<-r.done
	for l := range left {
		l.finish(Lost, fmt.Errorf("%w: lease %d no longer renewed (%w)", ErrLeaseLost, l.ID(), ErrClosed))
	}
	return true
}

// interval is the time between round starts: the override, or TTL/3 of
// the shortest lease so that two renewals can fail before it expires.
// Zero means no lease is held.
func (r *renewer) interval() time.Duration {
	return r.intervalOf(r.snapshot())
}

func (r *renewer) intervalOf(leases []*Lease) time.Duration {
	if len(leases) == 0 {
		return 0
	}
	if r.c.cfg.renewInterval > 0 {
		return r.c.cfg.renewInterval
	}
	return max(shortestTTL(leases)/3, minRenewInterval)
}

func shortestTTL(leases []*Lease) time.Duration {
	shortest := time.Duration(0)
	for _, l := range leases {
		if t := l.ttl(); shortest == 0 || t < shortest {
			shortest = t
		}
	}
	return shortest
}

func (r *renewer) run() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var next time.Time // zero: nothing to renew
	arm := func(at time.Time) {
		next = at
		timer.Reset(time.Until(at))
	}
	// The lease set changed: the first lease starts the schedule, and a
	// new shorter-lived lease pulls the next round forward, never back.
	changed := func() {
		iv := r.interval()
		switch {
		case iv == 0:
			next = time.Time{}
			timer.Stop()
		case next.IsZero() || time.Now().Add(iv).Before(next):
			arm(time.Now().Add(iv))
		}
	}
	// Rounds start every interval; one that overran starts the next at once.
	round := func() {
		start := time.Now()
		r.round()
		next = time.Time{}
		if iv := r.interval(); iv > 0 {
			arm(start.Add(iv))
		}
	}
	for {
		select {
		case <-r.ctx.Done():
			timer.Stop()
			return
		case <-r.kick:
			changed()
		case reply := <-r.force:
			round()
			close(reply)
		case <-timer.C:
			round()
		}
	}
}

// roundNow runs one round at once and waits for it; used by tests to make
// rounds deterministic.
func (r *renewer) roundNow(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case r.force <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// round renews every lease: first on the cluster, retried on the other
// members for up to the round's budget; then, with a backup server, the
// leases held there, and new backup checkouts for leases in Grace while the
// cluster does not answer.
func (r *renewer) round() {
	leases := r.snapshot()
	if len(leases) == 0 {
		return
	}
	iv := r.intervalOf(leases)
	ttl := shortestTTL(leases)
	// An attempt on one member may take at most half an interval, so that a
	// hung member (SIGSTOP, blackholed) leaves time for the next one well
	// before the lease leaves Held.
	attempt := min(r.c.cfg.callTimeout, max(iv/2, 100*time.Millisecond))
	budget := max(min(iv, ttl/3), attempt)
	ctx, cancel := context.WithTimeout(r.ctx, budget)
	up := r.clusterRound(ctx, leases, attempt)
	cancel()
	if r.c.backup != nil {
		ctx, cancel := context.WithTimeout(r.ctx, budget)
		r.backupRound(ctx, leases, up, attempt)
		cancel()
	}
}

// clusterRound renews the cluster leases in one call, then checks out on
// the cluster the leases that have no cluster lease (gone, or taken from
// the backup). It reports whether the cluster answered.
func (r *renewer) clusterRound(ctx context.Context, leases []*Lease, attempt time.Duration) (answered bool) {
	var refs []leaseRef
	byID := map[uint64]*Lease{}
	for _, l := range leases {
		if ref := l.clusterRef(); ref.id != 0 {
			refs, byID[ref.id] = append(refs, ref), l
		}
	}
	var releaseBackup refList
	if len(refs) > 0 {
		resp, sent, err := r.c.cluster.renew(ctx, attempt, r.c.cfg.protocol, refs)
		switch {
		case err == nil:
			answered = true
			for _, res := range resp.GetResults() {
				l := byID[res.GetLeaseId()]
				switch {
				case l == nil:
				case res.GetOk():
					if ref := l.clusterRenewed(sent, res); ref.id != 0 {
						releaseBackup.add(ref)
					}
				case res.GetIdleTimeout():
					r.c.cfg.logger.Info("triad lease released by the cluster: idle timeout; Touch checks it out again", "lease", res.GetLeaseId(), "feature", l.Feature())
					l.clusterIdleReleased(res.GetLeaseId(), res.GetError())
				default:
					reason := res.GetError()
					if reason == "" {
						reason = "no longer exists on the cluster"
					}
					r.c.cfg.logger.Warn("triad cluster no longer knows a lease; checking it out again", "lease", res.GetLeaseId(), "feature", l.Feature(), "reason", reason)
					l.clusterGone(res.GetLeaseId(), reason)
				}
			}
		case r.ctx.Err() != nil:
			return false
		case unanswered(err):
			// Leases keep their state: the cluster still holds them for
			// their TTL and the next round tries again; their timers move
			// them to Grace if no round succeeds in time.
			r.c.cfg.logger.Warn("triad renewal failed", "leases", len(refs), "err", err)
		default:
			// The members answered, refusing the call itself (a protocol
			// version they do not speak, an internal error on each): the
			// leases go on as if unanswered, and carry the refusal so that
			// Grace and Lost say why.
			r.c.cfg.logger.Warn("triad cluster refused the renewal", "leases", len(refs), "err", err)
			for id, l := range byID {
				l.clusterRenewRefused(id, err)
			}
		}
	}
	if len(refs) == 0 || answered {
		var need []*Lease
		var msgs []*triadv1.CheckoutRequest
		for _, l := range leases {
			if m := l.clusterCheckout(); m != nil {
				need, msgs = append(need, l), append(msgs, m)
			}
		}
		r.parallel(ctx, need, msgs, func(ctx context.Context, l *Lease, m *triadv1.CheckoutRequest) bool {
			g, err := r.c.cluster.checkout(ctx, attempt, m)
			switch {
			case err == nil:
				bk, cl := l.clusterGranted(m.GetRequestId(), g)
				if bk.id != 0 {
					releaseBackup.add(bk)
				}
				if cl.id != 0 {
					r.releaseOn(r.c.cluster, []leaseRef{cl})
				}
				return true
			case unanswered(err):
				return false // same request id next round
			default:
				if l.clusterRefused(m.GetRequestId(), err) {
					r.remove(l)
					r.c.cfg.logger.Warn("triad lease lost", "feature", l.Feature(), "err", err)
				}
				return true
			}
		}, &answered)
	}
	if len(releaseBackup.refs) > 0 {
		r.releaseOn(r.c.backup, releaseBackup.refs)
	}
	return answered
}

// refList collects leases to release from parallel checkouts.
type refList struct {
	mu   sync.Mutex
	refs []leaseRef
}

func (s *refList) add(ref leaseRef) {
	s.mu.Lock()
	s.refs = append(s.refs, ref)
	s.mu.Unlock()
}

// backupRound renews the leases held on the backup and, while the cluster
// does not answer, checks out there the leases in Grace.
func (r *renewer) backupRound(ctx context.Context, leases []*Lease, clusterUp bool, attempt time.Duration) {
	var refs []leaseRef
	byID := map[uint64]*Lease{}
	for _, l := range leases {
		if ref := l.backupRef(); ref.id != 0 {
			refs, byID[ref.id] = append(refs, ref), l
		}
	}
	if len(refs) > 0 {
		resp, sent, err := r.c.backup.renew(ctx, attempt, r.c.cfg.protocol, refs)
		if err != nil {
			if r.ctx.Err() == nil {
				r.c.cfg.logger.Warn("triad backup renewal failed", "leases", len(refs), "err", err)
			}
		} else {
			for _, res := range resp.GetResults() {
				if l := byID[res.GetLeaseId()]; l != nil {
					if res.GetOk() {
						l.backupRenewed(sent, res)
					} else {
						l.backupGone(res.GetLeaseId())
					}
				}
			}
		}
	}
	if clusterUp {
		return
	}
	var need []*Lease
	var msgs []*triadv1.CheckoutRequest
	for _, l := range leases {
		if m := l.backupCheckout(); m != nil {
			need, msgs = append(need, l), append(msgs, m)
		}
	}
	var unwanted refList
	var any bool
	r.parallel(ctx, need, msgs, func(ctx context.Context, l *Lease, m *triadv1.CheckoutRequest) bool {
		g, err := r.c.backup.checkout(ctx, attempt, m)
		switch {
		case err == nil:
			if ref := l.backupGranted(m.GetRequestId(), g); ref.id != 0 {
				unwanted.add(ref)
			} else {
				r.c.cfg.logger.Warn("triad cluster unreachable; lease moved to the backup server", "feature", l.Feature(), "lease", g.info.GetLeaseId())
			}
			return true
		case unanswered(err):
			return false
		default:
			l.backupRefused(m.GetRequestId())
			r.c.cfg.logger.Warn("triad backup server refused a checkout", "feature", l.Feature(), "err", err)
			return true
		}
	}, &any)
	if len(unwanted.refs) > 0 {
		r.releaseOn(r.c.backup, unwanted.refs)
	}
}

// parallel runs one checkout per lease, at most parallelCheckouts at once.
// The first runs alone: when nobody answers it, the others are not tried
// this round (the servers are down; each would wait the whole budget).
// answered is set when any checkout got an answer.
func (r *renewer) parallel(ctx context.Context, leases []*Lease, msgs []*triadv1.CheckoutRequest, do func(context.Context, *Lease, *triadv1.CheckoutRequest) bool, answered *bool) {
	if len(leases) == 0 {
		return
	}
	if !do(ctx, leases[0], msgs[0]) {
		return
	}
	*answered = true
	sem := make(chan struct{}, parallelCheckouts)
	var wg sync.WaitGroup
	for i := 1; i < len(leases); i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			do(ctx, leases[i], msgs[i])
		})
	}
	wg.Wait()
}

// releaseOn frees leases that are no longer wanted (backup leases after
// moving back, grants that arrived too late). Best effort, bounded by the
// call timeout: a lease not released expires with its TTL.
func (r *renewer) releaseOn(s *memberSet, refs []leaseRef) {
	ctx, cancel := context.WithTimeout(r.ctx, r.c.cfg.callTimeout)
	defer cancel()
	if err := s.release(ctx, r.c.cfg.callTimeout, r.c.cfg.protocol, refs); err != nil && r.ctx.Err() == nil {
		ids, _ := splitRefs(refs)
		r.c.cfg.logger.Warn("triad release of unneeded leases failed; they expire with their TTL", "server", s.kind, "leases", ids, "err", err)
	}
}
