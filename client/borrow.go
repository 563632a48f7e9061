package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// BorrowRequest describes seats wanted for offline use.
type BorrowRequest struct {
	Feature string
	Version uint32
	// Count is the number of seats; 0 means 1.
	Count uint32
	// Duration is how long the seats are kept without any contact with the
	// cluster; at most the feature's max borrow duration in the license.
	Duration time.Duration
	// RequestID makes the borrow idempotent; generated when empty.
	RequestID string
	// VersionText is a dotted version ("2.1") or a whole number; when set
	// it replaces Version, as in CheckoutRequest.
	VersionText string
}

// Borrowed is a borrowed lease: the cluster keeps its seats until Until
// without heartbeats, so the process may go offline. It is not renewed by
// the Client; Extend moves its end, Return gives the seats back early.
type Borrowed struct {
	c      *Client
	mu     sync.Mutex
	l      *triadv1.Lease
	secret []byte // the lease secret: Extend and Return send it
}

// ID is the cluster-wide lease id.
func (b *Borrowed) ID() uint64 { return b.l.GetLeaseId() }

// Info returns a copy of the lease as the cluster last described it.
func (b *Borrowed) Info() *triadv1.Lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	return proto.Clone(b.l).(*triadv1.Lease)
}

// Until is when the borrow ends (wall clock of the cluster's leader).
func (b *Borrowed) Until() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.UnixMilli(b.l.GetExpiresUnixMs())
}

// Borrow takes seats for offline use. Denials match the same sentinels as
// Checkout; a feature whose license allows no borrowing, or a duration
// over its limit, is refused with FAILED_PRECONDITION naming the limit.
// Borrowing needs the cluster: a backup server is never used for it.
func (c *Client) Borrow(ctx context.Context, req BorrowRequest) (*Borrowed, error) {
	if req.Feature == "" || req.Duration < time.Second {
		return nil, fmt.Errorf("triad: borrow: %w: a feature and a duration of at least 1 s are needed", ErrInvalidArgument)
	}
	var err error
	if req.Version, req.VersionText, err = versionOf(req.Version, req.VersionText); err != nil {
		return nil, fmt.Errorf("triad: borrow: %w: %v", ErrInvalidArgument, err)
	}
	if req.RequestID == "" {
		req.RequestID = rand.Text()
	}
	msg := &triadv1.BorrowRequest{
		ProtocolVersion: c.cfg.protocol,
		DurationSeconds: uint32(req.Duration / time.Second),
		Checkout: &triadv1.CheckoutRequest{
			RequestId: req.RequestID, Feature: req.Feature, Version: req.Version, VersionText: req.VersionText, Count: req.Count,
			User: c.cfg.user, Host: c.cfg.host, Pid: c.cfg.pid, ClientId: c.cfg.clientID,
		},
	}
	l, secret, err := c.cluster.borrow(ctx, c.cfg.callTimeout, msg)
	if err != nil {
		return nil, err
	}
	return &Borrowed{c: c, l: l, secret: secret}, nil
}

// Extend moves the end of the borrow to now + d (within the license's limit).
func (b *Borrowed) Extend(ctx context.Context, d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("triad: extend borrow: %w: duration under 1 s", ErrInvalidArgument)
	}
	l, _, err := b.c.cluster.borrow(ctx, b.c.cfg.callTimeout, &triadv1.BorrowRequest{
		ProtocolVersion: b.c.cfg.protocol, DurationSeconds: uint32(d / time.Second), LeaseId: b.ID(), LeaseSecret: b.secret,
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.l = l
	b.mu.Unlock()
	return nil
}

// Return gives the seats back before the borrow ends. Returning a borrow
// that already ended is not an error.
func (b *Borrowed) Return(ctx context.Context) error {
	return b.c.cluster.call(ctx, "return borrow", b.c.cfg.callTimeout, plainCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		_, err := rpc.ReturnBorrow(ctx, &triadv1.ReleaseRequest{ProtocolVersion: b.c.cfg.protocol, LeaseIds: []uint64{b.ID()}, LeaseSecrets: [][]byte{b.secret}})
		return "", err
	})
}

func (s *memberSet) borrow(ctx context.Context, timeout time.Duration, msg *triadv1.BorrowRequest) (lease *triadv1.Lease, secret []byte, err error) {
	err = s.call(ctx, "borrow "+msg.GetCheckout().GetFeature(), timeout, grantCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		resp, err := rpc.Borrow(ctx, msg)
		if err != nil {
			return "", err
		}
		lease, secret = resp.GetLease(), resp.GetLeaseSecret()
		return resp.GetLeader(), nil
	})
	if err == nil && lease == nil {
		err = fmt.Errorf("triad: borrow: %s answered without a lease", s.kind)
	}
	return lease, secret, err
}
