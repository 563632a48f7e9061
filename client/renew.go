package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// renewer is the one goroutine per Client that keeps every held lease
// alive with one batched Renew call per round. The cluster commits each
// Renew through Raft, so one call per lease would cost one log entry per
// lease; batching is a design rule, not an optimisation.
type renewer struct {
	c      *Client
	ctx    context.Context // cancelled by stop; bounds the rounds in flight
	cancel context.CancelFunc
	kick   chan struct{}      // the lease set changed: recompute the schedule
	force  chan chan struct{} // tests: run a round now, close the reply when done
	done   chan struct{}

	mu      sync.Mutex
	leases  map[uint64]*Lease
	stopped bool
}

func newRenewer(c *Client) *renewer {
	ctx, cancel := context.WithCancel(context.Background())
	return &renewer{
		c: c, ctx: ctx, cancel: cancel,
		kick:   make(chan struct{}, 1),
		force:  make(chan chan struct{}),
		done:   make(chan struct{}),
		leases: make(map[uint64]*Lease),
	}
}

// add puts a lease in the renewal set. A checkout that the cluster resolved
// to a lease already held (the caller reused a request id) returns the held
// Lease, so there is one object per lease id.
func (r *renewer) add(l *Lease) (*Lease, error) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if old, ok := r.leases[l.ID()]; ok {
		r.mu.Unlock()
		return old, nil
	}
	r.leases[l.ID()] = l
	r.mu.Unlock()
	r.poke()
	return l, nil
}

// remove takes a lease out of the renewal set and reports whether it was in it.
func (r *renewer) remove(l *Lease) bool {
	r.mu.Lock()
	cur, ok := r.leases[l.ID()]
	ok = ok && cur == l
	if ok {
		delete(r.leases, l.ID())
	}
	r.mu.Unlock()
	if ok {
		r.poke()
	}
	return ok
}

func (r *renewer) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop ends the goroutine, waits for it, and marks the leases still held
// as lost: nothing renews them any more.
func (r *renewer) stop() {
	r.mu.Lock()
	r.stopped = true
	left := r.leases
	r.leases = map[uint64]*Lease{}
	r.mu.Unlock()
	r.cancel()
	<-r.done
	for _, l := range left {
		l.finish(Lost, fmt.Errorf("%w: lease %d no longer renewed (%w)", ErrLeaseLost, l.ID(), ErrClosed))
	}
}

// interval is the time between rounds: the override, or TTL/3 of the
// shortest held lease so that two renewals can fail before it expires.
// Zero means no lease is held.
func (r *renewer) interval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.leases) == 0 {
		return 0
	}
	if r.c.cfg.renewInterval > 0 {
		return r.c.cfg.renewInterval
	}
	shortest := time.Duration(0)
	for _, l := range r.leases {
		if t := l.ttl(); shortest == 0 || t < shortest {
			shortest = t
		}
	}
	return max(shortest/3, minRenewInterval)
}

func (r *renewer) run() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var next time.Time // zero: nothing to renew
	schedule := func(fromScratch bool) {
		iv := r.interval()
		if iv == 0 {
			next = time.Time{}
			timer.Stop()
			return
		}
		// A new shorter-lived lease pulls the next round forward; it never
		// pushes a due round back.
		if at := time.Now().Add(iv); fromScratch || next.IsZero() || at.Before(next) {
			next = at
		}
		timer.Reset(time.Until(next))
	}
	for {
		select {
		case <-r.ctx.Done():
			timer.Stop()
			return
		case <-r.kick:
			schedule(false)
		case reply := <-r.force:
			r.round()
			close(reply)
			schedule(true)
		case <-timer.C:
			r.round()
			schedule(true)
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

// round renews every held lease with one Renew call, retried on the other
// members until the next round is due.
func (r *renewer) round() {
	r.mu.Lock()
	ids := make([]uint64, 0, len(r.leases))
	batch := make(map[uint64]*Lease, len(r.leases))
	for id, l := range r.leases {
		ids = append(ids, id)
		batch[id] = l
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	budget := max(r.interval(), r.c.cfg.callTimeout)
	ctx, cancel := context.WithTimeout(r.ctx, budget)
	defer cancel()
	var (
		resp *triadv1.RenewResponse
		sent time.Time
	)
	err := r.c.call(ctx, "renew", func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		t := time.Now()
		res, err := rpc.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: r.c.cfg.protocol, LeaseIds: ids})
		if err != nil {
			return "", err
		}
		resp, sent = res, t
		return res.GetLeader(), nil
	})
	if err != nil {
		if r.ctx.Err() == nil {
			// Leases stay held: the cluster keeps them for their TTL, and the
			// next round tries again. LastRenewed shows how stale they are.
			r.c.cfg.logger.Warn("triad renewal failed", "leases", len(ids), "err", err)
		}
		return
	}
	for _, res := range resp.GetResults() {
		l, ok := batch[res.GetLeaseId()]
		if !ok {
			continue
		}
		if res.GetOk() {
			l.renewed(sent, res)
			continue
		}
		if !r.remove(l) { // released meanwhile: not a loss
			continue
		}
		reason := res.GetError()
		if reason == "" {
			reason = "no longer exists on the cluster"
		}
		l.finish(Lost, fmt.Errorf("%w: lease %d (%s v%d): %s", ErrLeaseLost, l.ID(), l.Feature(), l.Version(), reason))
		r.c.cfg.logger.Warn("triad lease lost", "lease", l.ID(), "feature", l.Feature(), "reason", reason)
	}
}
