package server

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
)

// toStatus maps an internal error to a gRPC status: the one place where
// status codes are chosen for write-path failures.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out; it may still complete: retry with the same request id")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, "member is shutting down: retry on another member")
	case retryable(err):
		return status.Errorf(codes.Unavailable, "no leader reachable right now (%v): retry on another member", err)
	}
	return status.Errorf(codes.Internal, "%v", err)
}

// resultStatus maps an FSM refusal to a gRPC status.
func resultStatus(code fsmpb.Code, msg string) error {
	var c codes.Code
	switch code {
	case fsmpb.Code_OK:
		return nil
	case fsmpb.Code_NO_SEAT:
		c = codes.ResourceExhausted
	case fsmpb.Code_UNKNOWN_FEATURE, fsmpb.Code_VERSION_TOO_NEW, fsmpb.Code_NOT_FOUND:
		c = codes.NotFound
	case fsmpb.Code_LICENSE_EXPIRED, fsmpb.Code_LICENSE_NOT_YET_VALID:
		c = codes.PermissionDenied
	case fsmpb.Code_INVALID_ARGUMENT:
		c = codes.InvalidArgument
	case fsmpb.Code_ALREADY_EXISTS:
		c = codes.AlreadyExists
	case fsmpb.Code_NOT_FORMED, fsmpb.Code_ALREADY_FORMED, fsmpb.Code_BINDING_MISMATCH, fsmpb.Code_SUPERSEDED,
		fsmpb.Code_BORROW_NOT_ALLOWED, fsmpb.Code_RECYCLE_REFUSED:
		c = codes.FailedPrecondition
	case fsmpb.Code_DENIED_BY_RULE, fsmpb.Code_WRONG_LEASE_SECRET:
		c = codes.PermissionDenied
	case fsmpb.Code_POOL_EXHAUSTED, fsmpb.Code_TOO_MANY_SESSIONS, fsmpb.Code_QUEUE_TIMEOUT, fsmpb.Code_QUEUE_LEFT,
		// QUEUED is answered as a response by Checkout; anywhere else it
		// means "no seat yet".
		fsmpb.Code_QUEUED:
		c = codes.ResourceExhausted
	case fsmpb.Code_SESSION_REFUSED:
		c = codes.Unauthenticated
	case fsmpb.Code_PERMISSION_DENIED, fsmpb.Code_SIGNATURE_INVALID:
		c = codes.PermissionDenied
	case fsmpb.Code_HALTED:
		c = codes.Unavailable
	default:
		c = codes.Internal
	}
	return status.Error(c, msg)
}
