package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/triadv1"
)

// LeaseState is what the client knows about a lease.
type LeaseState int

const (
	// Held: a server confirmed the lease recently enough that it certainly
	// still counts it (until LastRenewed + TTL − margin).
	Held LeaseState = iota
	// Grace: no server could confirm the lease in time; the product may go
	// on running for the feature's grace period (GraceLeft). The client keeps
	// trying and the lease becomes Held again, with the same id, as soon as a
	// server answers.
	Grace
	// Lost: the grace period ran out, the cluster refused to grant the lease
	// again after it was gone, or the Client was closed. Err says which.
	Lost
	// Released: Release was called.
	Released
	// IdleReleased: the cluster released the lease because the product
	// reported itself idle (SetIdle) longer than the feature's TIMEOUT rule
	// allows. The lease is not Done: Touch checks it out again (same user
	// and host) when the product is active again; Release ends it. Err
	// wraps ErrIdleTimeout meanwhile.
	IdleReleased
)

func (s LeaseState) String() string {
	switch s {
	case Held:
		return "held"
	case Grace:
		return "grace"
	case Lost:
		return "lost"
	case Released:
		return "released"
	case IdleReleased:
		return "released: idle timeout"
	}
	return fmt.Sprintf("LeaseState(%d)", int(s))
}

// Source names the side that holds a lease.
type Source string

const (
	// SourceCluster: the lease is held by the Triad cluster.
	SourceCluster Source = "cluster"
	// SourceBackup: the lease is held by the backup server (WithBackup).
	SourceBackup Source = "backup"
)

// StateChange reports that a lease changed state, source or id. It is
// delivered to the WithStateHandler function and on the lease's Changes
// channel.
type StateChange struct {
	Lease    *Lease
	From, To LeaseState
	// Source and LeaseID are those after the change; the id changes when
	// the lease moves to or from the backup server, or when it had to be
	// checked out again because the cluster no longer knew it.
	Source  Source
	LeaseID uint64
	// GraceLeft is the time left before Lost when To is Grace.
	GraceLeft time.Duration
	// Err is the lease's Err when To is Lost or Released.
	Err error
	// RenewErr is the lease's RenewErr at the change: when To is Grace (or
	// Lost) it tells whether the cluster refused the renewals (for example
	// a *ProtocolVersionError) rather than not answering (nil).
	RenewErr error
	At       time.Time
}

// grant is one server's lease behind a Lease: from the cluster, or from
// the backup server.
type grant struct {
	info    *triadv1.Lease // updated with each renewal's expiry and TTL
	secret  []byte         // the lease secret (CheckoutResponse.lease_secret): sent with every renewal and release
	renewed time.Time      // send time of the last confirmed checkout/renewal; monotonic
}

func (g *grant) ref() leaseRef { return leaseRef{id: g.info.GetLeaseId(), secret: g.secret} }

func (g *grant) ttl() time.Duration {
	if s := g.info.GetTtlSeconds(); s > 0 {
		return time.Duration(s) * time.Second
	}
	return defaultLeaseTTL
}

// Lease is a grant of seats. The Client renews it in the background until
// it is released or lost; Done tells when that happens, and the state
// changes in between are reported through WithStateHandler and Changes.
type Lease struct {
	c                *Client
	feature          string
	version, count   uint32
	versionText      string
	ttlWanted        time.Duration
	done             chan struct{}
	changes          chan StateChange
	timer            *time.Timer // fires at the next time-driven transition
	firstCheckoutReq string

	mu      sync.Mutex
	state   LeaseState
	source  Source
	err     error
	cluster *grant // nil: no cluster lease (gone, or never taken)
	backup  *grant // nil: not on the backup
	// Request ids of checkouts whose outcome is unknown (no answer yet):
	// reused by the next round so that a grant is never taken twice.
	clusterReq, backupReq string
	// clusterReqSent is when clusterReq was first sent: a grant it
	// resolves to may date from then, so the lease's view starts there.
	clusterReqSent time.Time
	lastInfo       *triadv1.Lease // the lease as last held, while no grant is
	goneReason     string         // why the cluster lease went, for the Lost error
	renewErr       error          // the cluster's last refusal of a renewal; nil after a success
	floor          time.Time      // held-until carried over from grants that went away
	grace          time.Duration  // grace period of the feature, from the last grant
	idleSince      time.Time      // SetIdle; zero while active
	idleReq        string         // request id of Touch's re-checkout, reused until answered

	touchMu sync.Mutex // serialises Touch's re-checkouts
}

func newLease(c *Client, req CheckoutRequest) *Lease {
	l := &Lease{
		c: c, feature: req.Feature, version: req.Version, versionText: req.VersionText, count: max(req.Count, 1), ttlWanted: req.TTL,
		done: make(chan struct{}), changes: make(chan StateChange, changeBuffer),
		grace: defaultGrace, firstCheckoutReq: req.RequestID,
	}
	l.timer = time.AfterFunc(time.Hour, l.tick)
	l.timer.Stop()
	return l
}

// changeBuffer is the capacity of a lease's Changes channel.
const changeBuffer = 16

// Feature is the licensed feature name.
func (l *Lease) Feature() string { return l.feature }

// Version is the feature version granted: a whole number, or the first
// component of a dotted version (see VersionText).
func (l *Lease) Version() uint32 { return l.version }

// VersionText is the dotted version granted ("2.1"), empty for a whole
// number.
func (l *Lease) VersionText() string { return l.versionText }

// Components lists the component features a package checkout grants
// (empty for an ordinary feature): the product may use them all under
// this one lease.
func (l *Lease) Components() []string { return l.Info().GetComponents() }

// VersionString is the version granted as users read it: "2.1" or "5".
func (l *Lease) VersionString() string { return featver.Display(l.version, l.versionText) }

// Count is the number of seats held.
func (l *Lease) Count() uint32 { return l.count }

// current is the grant of the side that holds the lease. Called with l.mu.
func (l *Lease) current() *grant {
	if l.backup != nil {
		return l.backup
	}
	if l.cluster != nil {
		return l.cluster
	}
	return nil
}

func (l *Lease) infoLocked() *triadv1.Lease {
	if g := l.current(); g != nil {
		return g.info
	}
	return l.lastInfo
}

// ID is the lease id on the side that holds the lease (Source). A cluster
// lease id stays valid across leader changes and restarts; it changes only
// when the lease moves to the backup server and back without its cluster
// lease surviving, or when the cluster forgot it and it was checked out
// again.
func (l *Lease) ID() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.infoLocked().GetLeaseId()
}

// Source tells whether the cluster or the backup server holds the lease.
func (l *Lease) Source() Source {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.source
}

// FencingIndex is the Raft index that committed the grant: it only grows,
// so a resource shared by lease holders can refuse writes carrying an older
// index than one it has already seen.
func (l *Lease) FencingIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.infoLocked().GetFencingIndex()
}

// RequestID is the checkout request id that produced the current grant.
func (l *Lease) RequestID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.infoLocked().GetRequestId()
}

// Info returns a copy of the lease as last reported by the side holding it.
func (l *Lease) Info() *triadv1.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.infoLocked()).(*triadv1.Lease)
}

// State reports whether the lease is held, in grace, lost or released.
func (l *Lease) State() LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// GraceLeft is the time left before a lease in Grace becomes Lost. While
// the lease is Held it is the whole grace period (what an outage starting
// now would leave); once Lost or Released it is 0.
func (l *Lease) GraceLeft() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case Held:
		return l.grace
	case Grace:
		return max(time.Until(l.heldUntil().Add(l.grace)), 0)
	}
	return 0
}

// Done is closed when the lease ends (Released or Lost).
func (l *Lease) Done() <-chan struct{} { return l.done }

// Changes delivers the lease's state changes in order, and is closed after
// the final one (Lost or Released). It is buffered; a reader that falls
// more than 16 changes behind loses the oldest ones, never the latest.
// Reading it is optional.
func (l *Lease) Changes() <-chan StateChange { return l.changes }

// Err is nil while the lease is Held or in Grace. Once Lost it wraps
// ErrLeaseLost with the reason (and ErrClosed, or the cluster's refusal such
// as ErrNoSeat, when that was the cause); once Released it is ErrReleased.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// RenewErr is the cluster's refusal of the last renewal of this lease that
// it answered: a *ProtocolVersionError (matching ErrProtocolVersion) when
// the members do not speak this client's protocol version, for instance
// after a server upgrade, or another error the members answered with. It
// is nil while renewals succeed, and does not change while no member
// answers. A refused lease is treated like an unanswered one (Held until
// its view runs out, then Grace, then Lost; the backup server is used if
// there is one), so that a misconfigured server does not stop a product at
// once; the refusal is carried by the changes (StateChange.RenewErr) and
// wrapped in Err once Lost, so the product can tell its user which side to
// upgrade.
func (l *Lease) RenewErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewErr
}

// LastRenewed is the send time of the last checkout or renewal attempt that
// the side holding the lease confirmed. It carries Go's monotonic reading,
// so durations computed from it ignore wall-clock jumps; that server held
// the lease until at least LastRenewed()+TTL.
func (l *Lease) LastRenewed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.current(); g != nil {
		return g.renewed
	}
	return time.Time{}
}

// ttl is the shortest lease TTL of the grants (the one to renew for).
func (l *Lease) ttl() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := time.Duration(0)
	for _, g := range []*grant{l.cluster, l.backup} {
		if g != nil && (t == 0 || g.ttl() < t) {
			t = g.ttl()
		}
	}
	if t == 0 {
		if l.ttlWanted > 0 {
			return l.ttlWanted
		}
		return defaultLeaseTTL
	}
	return t
}

// margin is how long before a server would expire the lease the client
// stops calling it Held: the call timeout (one attempt may be applied by
// the server up to that long after it was sent, and the view is based on
// send times), at least maxHeldMargin, at most TTL/5 so that a short TTL
// still leaves most of it Held.
func (l *Lease) margin(ttl time.Duration) time.Duration {
	if m := l.c.cfg.margin; m > 0 {
		return m
	}
	return min(max(maxHeldMargin, l.c.cfg.callTimeout), ttl/5)
}

// heldUntil is the end of Held: the latest LastRenewed+TTL−margin over the
// live grants, or what went away with the last grant. Called with l.mu.
func (l *Lease) heldUntil() time.Time {
	until := l.floor
	for _, g := range []*grant{l.cluster, l.backup} {
		if g == nil {
			continue
		}
		if t := g.renewed.Add(g.ttl() - l.margin(g.ttl())); t.After(until) {
			until = t
		}
	}
	return until
}

func (l *Lease) active() bool { return l.state == Held || l.state == Grace }

// update recomputes state and source after any change, reports a change,
// and arms the timer for the next time-driven one. It reports whether the
// lease just became Lost (the caller then takes it out of the renewal set,
// outside l.mu). Called with l.mu.
func (l *Lease) update(now time.Time, prevID uint64) (lost bool) {
	if !l.active() {
		return false
	}
	if g := l.current(); g != nil {
		l.grace = graceOf(g.info)
	}
	until := l.heldUntil()
	state := Lost
	switch {
	case now.Before(until):
		state = Held
	case now.Before(until.Add(l.grace)):
		state = Grace
	}
	source := SourceCluster
	if l.backup != nil {
		source = SourceBackup
	}
	if state == Lost {
		if l.renewErr != nil {
			l.err = fmt.Errorf("%w: lease %d (%s v%s): no license server confirmed it within the grace period of %v; the cluster refused its renewal: %w",
				ErrLeaseLost, prevID, l.feature, l.VersionString(), l.grace, l.renewErr)
		} else {
			l.err = fmt.Errorf("%w: lease %d (%s v%s): no license server answered within the grace period of %v",
				ErrLeaseLost, prevID, l.feature, l.VersionString(), l.grace)
		}
		l.endLocked(Lost, l.err, now)
		return true
	}
	id := l.infoLocked().GetLeaseId()
	if state != l.state || source != l.source || id != prevID {
		from := l.state
		l.state, l.source = state, source
		l.emitLocked(from, now)
	}
	next := until
	if state == Grace {
		next = until.Add(l.grace)
	}
	l.timer.Reset(next.Sub(now))
	return false
}

// emitLocked queues a StateChange describing the current state.
func (l *Lease) emitLocked(from LeaseState, now time.Time) {
	ev := StateChange{Lease: l, From: from, To: l.state, Source: l.source, LeaseID: l.infoLocked().GetLeaseId(), Err: l.err, RenewErr: l.renewErr, At: now}
	if l.state == Grace {
		ev.GraceLeft = max(l.heldUntil().Add(l.grace).Sub(now), 0)
	}
	l.c.events.push(ev)
}

// endLocked moves an active (or idle-released) lease to its final state.
// Called with l.mu.
func (l *Lease) endLocked(state LeaseState, err error, now time.Time) bool {
	if !l.active() && l.state != IdleReleased {
		return false
	}
	from := l.state
	l.state, l.err = state, err
	l.timer.Stop()
	l.emitLocked(from, now)
	close(l.done)
	return true
}

// finish ends the lease (Released, or Lost on Close); false when it had
// already ended.
func (l *Lease) finish(state LeaseState, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endLocked(state, err, time.Now())
}

// tick is the timer: Held → Grace → Lost as time passes without renewals.
func (l *Lease) tick() {
	l.mu.Lock()
	lost := l.update(time.Now(), l.infoLocked().GetLeaseId())
	l.mu.Unlock()
	if lost {
		l.c.renew.remove(l)
		l.c.cfg.logger.Warn("triad lease lost: grace period over", "feature", l.feature, "lease", l.ID())
	}
}

// Release gives the seats back. The lease leaves the renewal set first, so
// even if no server can be reached before ctx ends the seats free
// themselves when the TTL runs out; the lease is Released either way and
// the error says whether the servers confirmed. Releasing a lease that is
// already gone, lost or released is not an error.
func (l *Lease) Release(ctx context.Context) error {
	if !l.c.renew.remove(l) {
		return nil
	}
	l.mu.Lock()
	cluster, backup := l.cluster, l.backup
	l.endLocked(Released, ErrReleased, time.Now())
	l.mu.Unlock()
	var errs []error
	if backup != nil {
		errs = append(errs, l.c.backup.release(ctx, l.c.cfg.callTimeout, l.c.cfg.protocol, []leaseRef{backup.ref()}))
	}
	if cluster != nil {
		errs = append(errs, l.c.cluster.release(ctx, l.c.cfg.callTimeout, l.c.cfg.protocol, []leaseRef{cluster.ref()}))
	}
	return errors.Join(errs...)
}
