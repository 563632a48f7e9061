package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// CheckoutRequest describes the seats wanted.
type CheckoutRequest struct {
	Feature string
	Version uint32
	// Count is the number of seats; 0 means 1.
	Count uint32
	// TTL is the lease TTL wanted, rounded up to whole seconds; 0 means the
	// server default (30 s).
	TTL time.Duration
	// RequestID makes the checkout idempotent; generated when empty. Reuse
	// one only to resume a checkout whose outcome is unknown.
	RequestID string
}

// Checkout takes seats and starts renewing the lease in the background.
// Every retry of this call (after a timeout or on another member) carries
// the same request id, so the cluster grants at most once. A denial is
// returned at once and matches ErrNoSeat, ErrUnknownFeature,
// ErrNotPermitted, ErrInvalidArgument or ErrProtocolVersion (a
// *ProtocolVersionError) with errors.Is; status.Code(err) gives the gRPC code.
func (c *Client) Checkout(ctx context.Context, req CheckoutRequest) (*Lease, error) {
	if req.Feature == "" {
		return nil, fmt.Errorf("triad: checkout: %w: feature is empty", ErrInvalidArgument)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("triad: checkout: %w: negative TTL", ErrInvalidArgument)
	}
	if req.RequestID == "" {
		req.RequestID = rand.Text()
	}
	msg := &triadv1.CheckoutRequest{
		ProtocolVersion: c.cfg.protocol,
		RequestId:       req.RequestID,
		Feature:         req.Feature,
		Version:         req.Version,
		Count:           req.Count,
		User:            c.cfg.user,
		Host:            c.cfg.host,
		Pid:             c.cfg.pid,
		ClientId:        c.cfg.clientID,
		TtlSeconds:      uint32((req.TTL + time.Second - 1) / time.Second),
	}
	var (
		got  *triadv1.Lease
		sent time.Time
	)
	err := c.call(ctx, "checkout "+req.Feature, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		t := time.Now()
		resp, err := rpc.Checkout(ctx, msg)
		if err != nil {
			return "", err
		}
		got, sent = resp.GetLease(), t
		return resp.GetLeader(), nil
	})
	if err != nil {
		return nil, err
	}
	if got == nil {
		return nil, errors.New("triad: checkout: server answered without a lease")
	}
	l, err := c.renew.add(newLease(c, got, sent))
	if err != nil {
		// Closed while checking out: the connections are gone, so the seat
		// can only free itself when its TTL runs out.
		c.cfg.logger.Warn("triad client closed during checkout; the lease expires with its TTL", "lease", got.GetLeaseId())
		return nil, err
	}
	return l, nil
}
