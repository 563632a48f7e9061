package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// LeaseState is what the client knows about a lease.
type LeaseState int

const (
	// Held: the lease is being renewed and the cluster knew it at the last renewal.
	Held LeaseState = iota
	// Lost: the cluster no longer knows the lease, or the Client was closed.
	// Err says which.
	Lost
	// Released: Release was called.
	Released
)

func (s LeaseState) String() string {
	switch s {
	case Held:
		return "held"
	case Lost:
		return "lost"
	case Released:
		return "released"
	}
	return fmt.Sprintf("LeaseState(%d)", int(s))
}

// Lease is a grant of seats. The Client renews it in the background until
// it is released or lost; Done tells when that happens.
type Lease struct {
	c    *Client
	done chan struct{}

	mu          sync.Mutex
	info        *triadv1.Lease // updated with each renewal's expiry and TTL
	state       LeaseState
	err         error
	lastRenewed time.Time // send time of the last successful checkout/renewal; monotonic
}

func newLease(c *Client, info *triadv1.Lease, sent time.Time) *Lease {
	return &Lease{c: c, done: make(chan struct{}), info: info, lastRenewed: sent}
}

// The identity fields never change after the grant, so they are read
// without the lock.

// ID is the cluster-wide lease id; it stays valid across leader changes.
func (l *Lease) ID() uint64 { return l.info.GetLeaseId() }

// Feature is the licensed feature name.
func (l *Lease) Feature() string { return l.info.GetFeature() }

// Version is the feature version granted.
func (l *Lease) Version() uint32 { return l.info.GetVersion() }

// Count is the number of seats held.
func (l *Lease) Count() uint32 { return l.info.GetCount() }

// FencingIndex is the Raft index that committed the grant: it only grows,
// so a resource shared by lease holders can refuse writes carrying an older
// index than one it has already seen.
func (l *Lease) FencingIndex() uint64 { return l.info.GetFencingIndex() }

// RequestID is the checkout request id that produced the lease.
func (l *Lease) RequestID() string { return l.info.GetRequestId() }

// Info returns a copy of the lease as last reported by the cluster.
func (l *Lease) Info() *triadv1.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return proto.Clone(l.info).(*triadv1.Lease)
}

// State reports whether the lease is held, lost or released.
func (l *Lease) State() LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Done is closed when the lease stops being held (released or lost).
func (l *Lease) Done() <-chan struct{} { return l.done }

// Err is nil while the lease is held. Once Lost it wraps ErrLeaseLost, with
// the cluster's reason or, when the Client was closed, also ErrClosed;
// once Released it is ErrReleased.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// LastRenewed is the send time of the last checkout or renewal attempt that
// the cluster confirmed. It carries Go's monotonic reading, so durations
// computed from it ignore wall-clock jumps; the cluster held the lease until
// at least LastRenewed()+TTL.
func (l *Lease) LastRenewed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastRenewed
}

// ttl is the lease TTL last announced by the cluster.
func (l *Lease) ttl() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.info.GetTtlSeconds(); s > 0 {
		return time.Duration(s) * time.Second
	}
	return defaultLeaseTTL
}

// renewed records a confirmed renewal sent at sent. Ignored once the lease
// is no longer held, so a late round cannot revive it.
func (l *Lease) renewed(sent time.Time, r *triadv1.RenewResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != Held {
		return
	}
	if sent.After(l.lastRenewed) {
		l.lastRenewed = sent
	}
	if r.GetExpiresUnixMs() != 0 {
		l.info.ExpiresUnixMs = r.GetExpiresUnixMs()
	}
	if r.GetTtlSeconds() != 0 {
		l.info.TtlSeconds = r.GetTtlSeconds()
	}
}

// finish moves a held lease to its final state; it reports false when the
// lease had already finished.
func (l *Lease) finish(state LeaseState, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != Held {
		return false
	}
	l.state, l.err = state, err
	close(l.done)
	return true
}

// Release gives the seats back. The lease leaves the renewal set first, so
// even if no member can be reached before ctx ends the seats free
// themselves when the TTL runs out; the lease is Released either way and
// the error says whether the cluster confirmed. Releasing a lease that is
// already gone, lost or released is not an error.
func (l *Lease) Release(ctx context.Context) error {
	if !l.c.renew.remove(l) {
		return nil
	}
	l.finish(Released, ErrReleased)
	return l.c.call(ctx, "release", func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		// released=false means already gone: the outcome wanted, so not checked.
		_, err := rpc.Release(ctx, &triadv1.ReleaseRequest{
			ProtocolVersion: l.c.cfg.protocol,
			LeaseIds:        []uint64{l.ID()},
		})
		return "", err
	})
}
