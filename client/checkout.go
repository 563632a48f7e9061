package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/triadlm/triad/featver"
)

// CheckoutRequest describes the seats wanted.
type CheckoutRequest struct {
	Feature string
	Version uint32
	// Count is the number of seats; 0 means 1.
	Count uint32
	// TTL is the lease TTL wanted, rounded up to whole seconds; 0 means the
	// server default (30 s). The client renews every TTL/3.
	TTL time.Duration
	// RequestID makes the checkout idempotent; generated when empty (128
	// random bits). Reuse one only to resume a checkout whose outcome is
	// unknown. One given here must be as hard to guess: with the client id
	// it lets a retry fetch the lease and its secret.
	RequestID string
	// VersionText is the version wanted as text: a dotted version such as
	// "2.1", "2024.06" or "5.3.1", or a whole number. When set it replaces
	// Version (which must then be 0 or its first component). Versions
	// compare component by component (2.10 > 2.9, 2 == 2.0); a license
	// seat serves requests at its version or lower.
	VersionText string

	// Queue makes Checkout wait for a seat instead of failing with
	// ErrNoSeat: the request joins the feature's first-in first-out queue
	// in the cluster and Checkout returns once the cluster grants it a
	// seat (client/DESIGN.md, "Queued checkouts").
	Queue bool
	// MaxWait bounds the wait in the queue, measured by the cluster; 0
	// means 1 hour, at most 7 days. When it passes, Checkout fails with
	// an error matching ErrNoSeat ("waited N in the queue ..., no seat
	// freed"). ctx bounds the call as well: when it ends, the request
	// leaves the queue on the server too.
	MaxWait time.Duration
	// OnQueue, when set, is called from Checkout's goroutine with the
	// request's place each time it changes while it waits (its position,
	// the queue's length or the deadline, which a leader change may move;
	// not after the grant). It must not block for long: the wait is kept alive by the
	// same goroutine.
	OnQueue func(QueueStatus)
}

// versionOf checks a request's version and returns it as sent: version
// and, for a dotted version, its text.
func versionOf(version uint32, text string) (uint32, string, error) {
	if text == "" {
		return version, "", nil
	}
	v, norm, err := featver.Split(text)
	if err != nil {
		return 0, "", err
	}
	if version != 0 && version != v {
		return 0, "", fmt.Errorf("version %d and version text %q disagree: give one of them", version, text)
	}
	return v, norm, nil
}

// Checkout takes seats and starts renewing the lease in the background.
// Every retry of this call (after a timeout or on another member) carries
// the same request id, so the cluster grants at most once. A denial is
// returned at once and matches ErrNoSeat, ErrUnknownFeature,
// ErrNotPermitted, ErrInvalidArgument or ErrProtocolVersion (a
// *ProtocolVersionError) with errors.Is; status.Code(err) gives the gRPC code.
//
// With WithBackup, a cluster that gives no answer at all within the call
// timeout (WithCallTimeout) makes Checkout take the lease from the backup
// server instead (Source() == SourceBackup); the lease moves to the cluster
// as soon as it answers. A denial by the cluster is never sent to the backup.
// ctx bounds the whole call; once it ends, so does Checkout.
func (c *Client) Checkout(ctx context.Context, req CheckoutRequest) (*Lease, error) {
	if req.Feature == "" {
		return nil, fmt.Errorf("triad: checkout: %w: feature is empty", ErrInvalidArgument)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("triad: checkout: %w: negative TTL", ErrInvalidArgument)
	}
	var err error
	if req.Version, req.VersionText, err = versionOf(req.Version, req.VersionText); err != nil {
		return nil, fmt.Errorf("triad: checkout: %w: %v", ErrInvalidArgument, err)
	}
	if req.MaxWait < 0 || req.MaxWait > maxQueueWait || (req.MaxWait != 0 && !req.Queue) {
		return nil, fmt.Errorf("triad: checkout: %w: MaxWait must be 0 to 7 days, with Queue set", ErrInvalidArgument)
	}
	if req.RequestID == "" {
		req.RequestID = rand.Text()
	}
	l := newLease(c, req)
	cctx := ctx
	if c.backup != nil {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
		defer cancel()
	}
	sent := time.Now()
	var g *grant
	if req.Queue {
		g, err = c.waitInQueue(ctx, l, req)
		if err != nil {
			return nil, err
		}
	} else {
		g, err = c.cluster.checkout(cctx, c.cfg.callTimeout, c.checkoutMsg(l, req.RequestID))
	}
	switch {
	case err == nil:
		l.cluster, l.source = g, SourceCluster
	case c.backup != nil && unanswered(err) && ctx.Err() == nil:
		g, err = c.backup.checkout(ctx, c.cfg.callTimeout, c.checkoutMsg(l, rand.Text()))
		if err != nil {
			return nil, err
		}
		c.cfg.logger.Warn("triad cluster did not answer; lease taken from the backup server", "feature", req.Feature, "lease", g.info.GetLeaseId())
		// The cluster may have granted without answering: the next round
		// asks again with the same request id, so it is resolved, not doubled.
		l.backup, l.source, l.clusterReq, l.clusterReqSent = g, SourceBackup, req.RequestID, sent
	default:
		return nil, err
	}
	l.mu.Lock()
	l.update(time.Now(), l.infoLocked().GetLeaseId())
	l.mu.Unlock()
	got, err := c.renew.add(l)
	if err != nil {
		// Closed while checking out: the connections are gone, so the seat
		// can only free itself when its TTL runs out.
		l.timer.Stop()
		c.cfg.logger.Warn("triad client closed during checkout; the lease expires with its TTL", "lease", l.ID())
		return nil, err
	}
	return got, nil
}
