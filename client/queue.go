package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// QueueStatus is a queued checkout's place while it waits.
type QueueStatus struct {
	// Position is 1 for the request served next.
	Position int
	// Length is the number of requests waiting for the feature.
	Length int
	// Deadline is when the wait ends without a seat (the cluster's clock).
	Deadline time.Time
}

const (
	maxQueueWait = 7 * 24 * time.Hour
	// maxQueuePoll bounds the interval between two sends of a waiting
	// checkout: each renews the request's place (it leaves the queue when
	// not renewed within the lease TTL) and learns whether it was granted.
	maxQueuePoll = 2 * time.Second
)

// queuePoll is the interval between sends of a waiting checkout: a third
// of the TTL, as for renewals, and at most maxQueuePoll so the grant is
// noticed soon after the seat frees.
func queuePoll(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	return min(ttl/3, maxQueuePoll)
}

// waitInQueue sends the queued checkout until the cluster grants it, the
// cluster refuses it (its wait ended, a rule...), or ctx ends; then the
// request leaves the queue on the cluster too. Every send carries the same
// request id, on whichever member answers, so the wait survives a leader
// change and a retried send never takes a second seat.
func (c *Client) waitInQueue(ctx context.Context, l *Lease, req CheckoutRequest) (*grant, error) {
	msg := c.checkoutMsg(l, req.RequestID)
	msg.Queue = true
	msg.QueueWaitSeconds = uint32((req.MaxWait + time.Second - 1) / time.Second)
	poll := queuePoll(req.TTL)
	var last QueueStatus
	prevSent := time.Now()
	for {
		sent := time.Now()
		g, q, err := c.cluster.checkoutOrQueue(ctx, c.cfg.callTimeout, msg)
		if err != nil {
			if ctx.Err() != nil {
				c.leaveQueue(msg)
				return nil, fmt.Errorf("triad: checkout %s: left the queue: %w", req.Feature, ctx.Err())
			}
			return nil, err
		}
		if g != nil {
			// The grant was applied after the previous send was answered:
			// its TTL runs from no earlier than that send.
			g.renewed = prevSent
			return g, nil
		}
		st := QueueStatus{Position: int(q.GetQueuePosition()), Length: int(q.GetQueueLength()),
			Deadline: time.UnixMilli(q.GetQueueDeadlineUnixMs())}
		if st != last && req.OnQueue != nil {
			req.OnQueue(st)
		}
		last, prevSent = st, sent
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			c.leaveQueue(msg)
			return nil, fmt.Errorf("triad: checkout %s: left the queue: %w", req.Feature, ctx.Err())
		case <-t.C:
		}
	}
}

// leaveQueue takes an abandoned queued checkout out of the cluster's
// queue. When the cluster granted it meanwhile, the lease is released, so
// an abandoned wait never keeps a seat. Best effort, bounded by a few call
// timeouts: a place nobody renews leaves the queue after its TTL anyway,
// and an unreleased lease expires with its TTL.
func (c *Client) leaveQueue(msg *triadv1.CheckoutRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*c.cfg.callTimeout)
	defer cancel()
	resp, err := c.cluster.cancelQueued(ctx, c.cfg.callTimeout, msg.GetProtocolVersion(), msg.GetClientId(), msg.GetRequestId())
	if err != nil {
		c.cfg.logger.Warn("triad: could not leave the queue; the place lapses with its TTL", "feature", msg.GetFeature(), "error", err)
		return
	}
	if resp.GetRemoved() || resp.GetGrantedLeaseId() == 0 {
		return
	}
	// Granted between the last send and the cancel: fetch the lease (same
	// request id, so no new seat) and release it.
	plain := proto.Clone(msg).(*triadv1.CheckoutRequest)
	plain.Queue, plain.QueueWaitSeconds = false, 0
	g, err := c.cluster.checkout(ctx, c.cfg.callTimeout, plain)
	if err != nil {
		if !errors.Is(err, ErrNoSeat) && !errors.Is(err, ErrLeaseEnded) {
			c.cfg.logger.Warn("triad: could not check an abandoned queued checkout", "feature", msg.GetFeature(), "error", err)
		}
		return
	}
	if err := c.cluster.release(ctx, c.cfg.callTimeout, msg.GetProtocolVersion(), []leaseRef{g.ref()}); err != nil {
		c.cfg.logger.Warn("triad: could not release the lease of an abandoned queued checkout; it expires with its TTL",
			"feature", msg.GetFeature(), "lease", g.info.GetLeaseId(), "error", err)
	}
}
