package server

import (
	"crypto/rand"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
)

const (
	// leaseSecretLen is the size of the secret the leader draws for each
	// grant (128 bits from crypto/rand).
	leaseSecretLen = 16
	// maxSecretLen bounds a secret sent back by a client.
	maxSecretLen = 64
)

// stampSecrets gives every new grant (checkout or new borrow) in ops a
// fresh lease secret. It runs on the leader, just before the batch is
// proposed, and overwrites whatever secret an op carried: neither the
// client nor a forwarding member chooses it, and Apply only stores it.
// A retried request id still gets its first grant's secret: the FSM
// answers with the stored lease.
func stampSecrets(ops []*fsmpb.Op) {
	var grants []*fsmpb.Grant
	for _, op := range ops {
		switch o := op.GetOp().(type) {
		case *fsmpb.Op_Grant:
			grants = append(grants, o.Grant)
		case *fsmpb.Op_Borrow:
			if o.Borrow.GetLeaseId() == 0 && o.Borrow.GetGrant() != nil {
				grants = append(grants, o.Borrow.Grant)
			}
		}
	}
	if len(grants) == 0 {
		return
	}
	buf := make([]byte, leaseSecretLen*len(grants))
	rand.Read(buf) // never fails (crypto/rand, Go ≥ 1.24)
	for i, g := range grants {
		g.Secret = buf[i*leaseSecretLen : (i+1)*leaseSecretLen : (i+1)*leaseSecretLen]
	}
}

// validateOps applies the input limits of the Licensing edge to lease
// operations, wherever they come from: this member's edge, the admin
// service, or a follower's Peer.Forward (so a forwarded batch cannot carry
// what the edge would refuse). The first invalid op refuses the call.
func validateOps(ops []*fsmpb.Op) error {
	if len(ops) == 0 {
		return status.Error(codes.InvalidArgument, "no lease operation given")
	}
	for _, op := range ops {
		if err := validateOp(op); err != nil {
			return err
		}
	}
	return nil
}

func validateOp(op *fsmpb.Op) error {
	switch o := op.GetOp().(type) {
	case *fsmpb.Op_Grant:
		return validateGrant(o.Grant)
	case *fsmpb.Op_Renew:
		return checkLeaseRefs(o.Renew.GetLeaseIds(), o.Renew.GetSecrets())
	case *fsmpb.Op_Release:
		return checkLeaseRefs(o.Release.GetLeaseIds(), o.Release.GetSecrets())
	case *fsmpb.Op_Dequeue:
		d := o.Dequeue
		if d.GetRequestId() == "" || len(d.GetRequestId()) > maxIDLen || d.GetClientId() == "" || len(d.GetClientId()) > maxIDLen {
			return status.Errorf(codes.InvalidArgument, "request_id and client_id of the queued checkout must be 1 to %d characters", maxIDLen)
		}
		return nil
	case *fsmpb.Op_AdminRelease:
		if o.AdminRelease.GetLeaseId() == 0 {
			return status.Error(codes.InvalidArgument, "no lease id given")
		}
		return nil
	case *fsmpb.Op_Borrow:
		b := o.Borrow
		if d := b.GetDurationMs(); d < 1000 || d > maxBorrowSeconds*1000 {
			return status.Errorf(codes.InvalidArgument, "borrow duration %d ms is out of range (1 s to %d s)", d, maxBorrowSeconds)
		}
		if b.GetLeaseId() != 0 {
			return checkSecret(b.GetSecret())
		}
		if b.GetGrant() == nil {
			return status.Error(codes.InvalidArgument, "a new borrow needs checkout (feature, request_id...)")
		}
		if b.GetGrant().GetQueueWaitMs() != 0 {
			return status.Error(codes.InvalidArgument, "a borrow cannot wait in the queue: check out with a queue, then borrow")
		}
		return validateGrant(b.Grant)
	}
	return status.Error(codes.InvalidArgument, "empty lease operation")
}

// validateGrant holds a Grant to validateCheckout's limits.
func validateGrant(g *fsmpb.Grant) error {
	switch {
	case g.GetRequestId() == "" || len(g.GetRequestId()) > maxIDLen:
		return status.Errorf(codes.InvalidArgument, "request_id must be 1 to %d characters: the client library sets a unique one per checkout", maxIDLen)
	case g.GetClientId() == "" || len(g.GetClientId()) > maxIDLen:
		return status.Errorf(codes.InvalidArgument, "client_id must be 1 to %d characters: the client library sets a random one per process, and request ids are scoped by it", maxIDLen)
	case g.GetFeature() == "" || len(g.GetFeature()) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "feature name must be 1 to %d characters", maxNameLen)
	case g.GetCount() > maxCount:
		return status.Errorf(codes.InvalidArgument, "count %d is too large (at most %d seats per checkout)", g.GetCount(), maxCount)
	case g.GetQueueWaitMs() < 0 || g.GetQueueWaitMs() > maxQueueWaitSeconds*1000:
		return status.Errorf(codes.InvalidArgument, "queue wait %d ms is out of range (0 to %d s)", g.GetQueueWaitMs(), maxQueueWaitSeconds)
	case g.GetTtlMs() < 0:
		return status.Errorf(codes.InvalidArgument, "ttl %d ms is negative", g.GetTtlMs())
	case len(g.GetUser()) > maxNameLen || len(g.GetHost()) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "user or host is too long (at most %d characters)", maxNameLen)
	case len(g.GetViaMember()) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "member name is too long (at most %d characters)", maxNameLen)
	}
	return nil
}

// checkLeaseRefs checks lease ids and their secrets (at most one per id).
func checkLeaseRefs(ids []uint64, secrets [][]byte) error {
	if err := checkLeaseIDs(ids); err != nil {
		return err
	}
	if len(secrets) > len(ids) {
		return status.Errorf(codes.InvalidArgument, "%d lease secrets for %d lease ids: at most one per id, in the same order", len(secrets), len(ids))
	}
	for _, s := range secrets {
		if err := checkSecret(s); err != nil {
			return err
		}
	}
	return nil
}

func checkSecret(s []byte) error {
	if len(s) > maxSecretLen {
		return status.Errorf(codes.InvalidArgument, "a lease secret of %d bytes is too long (at most %d)", len(s), maxSecretLen)
	}
	return nil
}
