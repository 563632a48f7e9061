package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"
)

// Idle timeout (FlexNet TIMEOUT; docs/client.md, "Idle timeout").
//
// A product tells the client when it is idle (SetIdle) and when it is
// active again (Touch). The client reports the idle time with each
// renewal, in the renewal it sends anyway (no extra call per lease). When
// the feature has a TIMEOUT rule and the product has been idle that long,
// the cluster releases the lease; the next renewal learns it and the lease
// moves to IdleReleased (a state change). Touch then checks the seats out
// again, with the same user and host.

// SetIdle reports that the product has been idle since since (a time
// from time.Now, so that the idle time is measured on the monotonic
// clock). The idle time is sent with every renewal until Touch (or
// SetIdle with the zero time) reports activity. It does nothing on a lease
// that has ended.
func (l *Lease) SetIdle(since time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if since.After(time.Now()) {
		since = time.Now()
	}
	l.idleSince = since
}

// IdleSince is the time SetIdle reported, zero while the product is
// active.
func (l *Lease) IdleSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idleSince
}

// Touch reports that the product is active. On a Held (or Grace) lease it
// only clears the idle time, cheaply; the next renewal tells the cluster.
// On a lease the cluster released for idleness (IdleReleased) it checks
// the seats out again, with the same feature, version, count, user and
// host, within ctx: on success the lease is Held again with a new lease id
// (a state change IdleReleased → Held) and Touch returns nil. When the
// cluster refuses (for example ErrNoSeat: someone else took the seat
// meanwhile) or does not answer, Touch returns the error and the lease
// stays IdleReleased: the product may call Touch again later, or Release.
// On a Lost or Released lease it returns the lease's Err.
func (l *Lease) Touch(ctx context.Context) error {
	l.mu.Lock()
	l.idleSince = time.Time{}
	state := l.state
	err := l.err
	l.mu.Unlock()
	switch state {
	case Held, Grace:
		return nil
	case IdleReleased:
	default:
		return err
	}
	l.touchMu.Lock()
	defer l.touchMu.Unlock()
	l.mu.Lock()
	if l.state != IdleReleased {
		err, active := l.err, l.active()
		l.mu.Unlock()
		if active {
			return nil // a concurrent Touch checked it out
		}
		return err
	}
	if l.idleReq == "" {
		l.idleReq = rand.Text()
	}
	msg := l.c.checkoutMsg(l, l.idleReq)
	l.mu.Unlock()

	g, err := l.c.cluster.checkout(ctx, l.c.cfg.callTimeout, msg)
	if err != nil {
		if !unanswered(err) {
			l.mu.Lock()
			l.idleReq = "" // refused: the next Touch is a new request
			l.mu.Unlock()
		}
		return fmt.Errorf("%w; checking %s v%d out again failed: %w", ErrIdleTimeout, l.feature, l.version, err)
	}
	l.mu.Lock()
	if l.state != IdleReleased { // Released or closed meanwhile
		l.mu.Unlock()
		_ = l.c.cluster.release(context.WithoutCancel(ctx), l.c.cfg.callTimeout, l.c.cfg.protocol, []leaseRef{g.ref()})
		return l.Err()
	}
	now := time.Now()
	l.cluster, l.idleReq, l.err, l.renewErr, l.floor = g, "", nil, nil, time.Time{}
	l.grace = graceOf(g.info)
	l.state = Held
	l.update(now, g.info.GetLeaseId()) // arms the timer
	if l.state == Held {
		l.emitLocked(IdleReleased, now)
	}
	l.mu.Unlock()
	l.c.renew.poke()
	return nil
}

// clusterIdleReleased moves the lease to IdleReleased after the cluster
// said that it released lease id for idleness. The lease stays in the
// renewal set (nothing is renewed or checked out for it while it is not
// active) so that Touch can bring it back.
func (l *Lease) clusterIdleReleased(id uint64, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster == nil || l.cluster.info.GetLeaseId() != id {
		return
	}
	l.lastInfo = l.infoLocked()
	l.cluster, l.clusterReq, l.clusterReqSent, l.renewErr = nil, "", time.Time{}, nil
	from := l.state
	l.state = IdleReleased
	l.err = fmt.Errorf("%w: lease %d (%s v%d): %s", ErrIdleTimeout, id, l.feature, l.version, reason)
	l.timer.Stop()
	l.emitLocked(from, time.Now())
}
