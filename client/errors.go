package client

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels for the cluster's definite answers. Errors returned by the
// client match them with errors.Is and still carry the gRPC status
// (status.Code(err) works), so callers can use either style.
var (
	// ErrNoSeat: every seat of the feature is in use (RESOURCE_EXHAUSTED).
	ErrNoSeat = errors.New("triad: no seat left")
	// ErrUnknownFeature: no license grants the feature at that version (NOT_FOUND).
	ErrUnknownFeature = errors.New("triad: unknown feature or version")
	// ErrLeaseEnded: a checkout's request id already produced a lease,
	// which has ended (expired or released); its seat is gone and the
	// request id will not get another (NOT_FOUND "... which has ended").
	// Check out again for a new seat.
	ErrLeaseEnded = errors.New("triad: the lease of this request has ended")
	// ErrNotPermitted: the license is expired or invalid (PERMISSION_DENIED).
	ErrNotPermitted = errors.New("triad: not permitted")
	// ErrInvalidArgument: the request was malformed (INVALID_ARGUMENT).
	ErrInvalidArgument = errors.New("triad: invalid argument")
	// ErrProtocolVersion: client and server protocol versions are
	// incompatible; the error is a *ProtocolVersionError.
	ErrProtocolVersion = errors.New("triad: license protocol version is invalid")
	// ErrLeaseLost: a lease's Err once Lost (grace period over, checkout
	// refused after the cluster forgot it, or Client closed).
	ErrLeaseLost = errors.New("triad: lease lost")
	// ErrReleased: a lease's Err after Release.
	ErrReleased = errors.New("triad: lease released")
	// ErrIdleTimeout: a lease's Err while IdleReleased: the cluster
	// released it because the product was idle longer than the feature's
	// TIMEOUT rule. Lease.Touch checks it out again.
	ErrIdleTimeout = errors.New("triad: lease released: idle timeout")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("triad: client closed")
	// ErrNeverFits: the checkout asks for more seats than the feature has
	// in all (FAILED_PRECONDITION "can never fit: ..."): no wait or retry
	// can help; ask for fewer. Unlike ErrNoSeat it is not a busy signal.
	ErrNeverFits = errors.New("triad: the checkout can never fit")
)

// ProtocolVersionError reports the versions in a FAILED_PRECONDITION
// "license protocol version is invalid: client N, server M" answer, so a
// product can tell its user which side to upgrade.
type ProtocolVersionError struct {
	Client, Server uint32
	st             *status.Status
}

func (e *ProtocolVersionError) Error() string {
	return fmt.Sprintf("license protocol version is invalid: client %d, server %d", e.Client, e.Server)
}

// Is makes errors.Is(err, ErrProtocolVersion) true.
func (e *ProtocolVersionError) Is(target error) bool { return target == ErrProtocolVersion }

// GRPCStatus keeps the server's status reachable through status.FromError.
func (e *ProtocolVersionError) GRPCStatus() *status.Status {
	if e.st == nil {
		return status.New(codes.FailedPrecondition, e.Error())
	}
	return e.st
}

// denial is a definite refusal by the cluster: the status as sent plus the
// sentinel it matches. Unexported because the sentinels and the status are
// the API; the concrete type can then change freely.
type denial struct {
	op       string
	st       *status.Status
	sentinel error // nil when the code has no sentinel
}

func (e *denial) Error() string { return "triad: " + e.op + ": " + e.st.Message() }

func (e *denial) Unwrap() error { return e.sentinel }

func (e *denial) GRPCStatus() *status.Status { return e.st }

var protocolRE = regexp.MustCompile(`client (\d+), server (\d+)`)

// endedRE matches the cluster's answer to a retried checkout whose lease
// has ended: "request R already produced lease N, which has ended".
var endedRE = regexp.MustCompile(`already produced lease \d+, which has ended`)

// classify turns a member's error that ends a call (a definite answer, or a
// member fault no other member did better than) into the error returned to
// the caller. It is the one place where status codes map to sentinels.
func classify(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("triad: %s: %w", op, err)
	}
	d := &denial{op: op, st: st}
	switch st.Code() {
	case codes.ResourceExhausted:
		d.sentinel = ErrNoSeat
	case codes.NotFound:
		d.sentinel = ErrUnknownFeature
		if endedRE.MatchString(st.Message()) {
			d.sentinel = ErrLeaseEnded
		}
	case codes.PermissionDenied:
		d.sentinel = ErrNotPermitted
	case codes.InvalidArgument:
		d.sentinel = ErrInvalidArgument
	case codes.FailedPrecondition:
		if strings.HasPrefix(st.Message(), "can never fit") {
			d.sentinel = ErrNeverFits
		}
		if m := protocolRE.FindStringSubmatch(st.Message()); m != nil {
			cv, err1 := strconv.ParseUint(m[1], 10, 32)
			sv, err2 := strconv.ParseUint(m[2], 10, 32)
			if err1 == nil && err2 == nil {
				return &ProtocolVersionError{Client: uint32(cv), Server: uint32(sv), st: st}
			}
		}
	default:
		// Internal, Unimplemented, …: keep the gRPC error as is.
		return fmt.Errorf("triad: %s: %w", op, err)
	}
	return d
}

// attemptOutcome says what call does after one member's error.
type attemptOutcome int

const (
	// definite: a definite answer from the cluster, the same on every
	// member (no seat, unknown feature, expired license, bad request…):
	// returned at once.
	definite attemptOutcome = iota
	// noAnswerYet: the member could not serve now (no leader, shutting
	// down, dead connection, the attempt's timeout, overload, an aborted
	// commit): the next member is tried, and the call goes on until one
	// answers or the caller's context ends.
	noAnswerYet
	// memberFault: an answer that may be this member's own problem (an
	// internal error, a protocol version or method it does not have, as
	// during an upgrade one member at a time): the other members are tried,
	// and the fault is returned if none of them does better within one pass
	// over the members, so it never loops.
	memberFault
)

// outcome classifies an attempt's error. grants is true for Checkout and
// Borrow, whose RESOURCE_EXHAUSTED is the "no seat" or "pool used up"
// denial; for the other calls the cluster never answers it (an unknown
// lease is a per-lease result), so there it can only be overload.
//
// DEADLINE_EXCEEDED and CANCELED here come from the attempt's own timeout or
// from the member (the caller's context is checked separately by call).
// There is no "not leader" code: a member without a leader forwards to it or
// answers UNAVAILABLE.
func outcome(err error, grants bool) attemptOutcome {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return noAnswerYet
	case codes.ResourceExhausted:
		if grants {
			return definite
		}
		return noAnswerYet
	case codes.Internal, codes.Unknown, codes.Unimplemented, codes.DataLoss:
		return memberFault
	case codes.FailedPrecondition:
		if protocolRE.MatchString(status.Convert(err).Message()) {
			return memberFault
		}
	}
	return definite
}
