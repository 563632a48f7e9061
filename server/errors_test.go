package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"raft not leader", raft.ErrNotLeader, codes.Unavailable},
		{"raft leadership lost", raft.ErrLeadershipLost, codes.Unavailable},
		{"raft enqueue timeout", raft.ErrEnqueueTimeout, codes.Unavailable},
		{"raft aborted by restore", raft.ErrAbortedByRestore, codes.Unavailable},
		{"raft shutdown", raft.ErrRaftShutdown, codes.Unavailable},
		{"no leader", ErrNoLeader, codes.Unavailable},
		{"not leader", ErrNotLeader, codes.Unavailable},
		{"forward failed", fmt.Errorf("%w: forward to 10.0.0.1:4085: connection refused", errRetry), codes.Unavailable},
		{"wrapped raft not leader", fmt.Errorf("apply: %w", raft.ErrNotLeader), codes.Unavailable},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"wrapped deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", context.Canceled, codes.Canceled},
		{"anything else", errors.New("boom"), codes.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := toStatus(tc.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("toStatus(%v) = %v, not a status error", tc.err, got)
			}
			if st.Code() != tc.code {
				t.Errorf("toStatus(%v) code = %s, want %s (message %q)", tc.err, st.Code(), tc.code, st.Message())
			}
		})
	}
}

func TestToStatusMessages(t *testing.T) {
	if msg := status.Convert(toStatus(errors.New("boom"))).Message(); !strings.Contains(msg, "boom") {
		t.Errorf("Internal message %q lost the cause", msg)
	}
	if msg := status.Convert(toStatus(ErrNoLeader)).Message(); !strings.Contains(msg, "no leader") || !strings.Contains(msg, "retry") {
		t.Errorf("Unavailable message %q should name the cause and say to retry", msg)
	}
	if msg := status.Convert(toStatus(context.DeadlineExceeded)).Message(); !strings.Contains(msg, "same request id") {
		t.Errorf("DeadlineExceeded message %q should say to retry with the same request id", msg)
	}
}

func TestToStatusPassesStatusThrough(t *testing.T) {
	if toStatus(nil) != nil {
		t.Fatalf("toStatus(nil) != nil")
	}
	for _, in := range []error{
		status.Error(codes.NotFound, "no such feature"),
		status.Error(codes.Unavailable, "leader gone"),
		status.Error(codes.ResourceExhausted, "no seat"),
	} {
		if got := toStatus(in); got != in {
			t.Errorf("toStatus(%v) = %v, want the same error unchanged", in, got)
		}
	}
}

func TestResultStatus(t *testing.T) {
	tests := []struct {
		code fsmpb.Code
		want codes.Code
	}{
		{fsmpb.Code_NO_SEAT, codes.ResourceExhausted},
		{fsmpb.Code_UNKNOWN_FEATURE, codes.NotFound},
		{fsmpb.Code_VERSION_TOO_NEW, codes.NotFound},
		{fsmpb.Code_NOT_FOUND, codes.NotFound},
		{fsmpb.Code_LICENSE_EXPIRED, codes.PermissionDenied},
		{fsmpb.Code_LICENSE_NOT_YET_VALID, codes.PermissionDenied},
		{fsmpb.Code_INVALID_ARGUMENT, codes.InvalidArgument},
		{fsmpb.Code_ALREADY_EXISTS, codes.AlreadyExists},
		{fsmpb.Code_NOT_FORMED, codes.FailedPrecondition},
		{fsmpb.Code_ALREADY_FORMED, codes.FailedPrecondition},
		{fsmpb.Code_BINDING_MISMATCH, codes.FailedPrecondition},
		{fsmpb.Code_SUPERSEDED, codes.FailedPrecondition},
		{fsmpb.Code_DENIED_BY_RULE, codes.PermissionDenied},
		{fsmpb.Code_POOL_EXHAUSTED, codes.ResourceExhausted},
		{fsmpb.Code_BORROW_NOT_ALLOWED, codes.FailedPrecondition},
		{fsmpb.Code_RECYCLE_REFUSED, codes.FailedPrecondition},
		{fsmpb.Code_SESSION_REFUSED, codes.Unauthenticated},
		{fsmpb.Code_PERMISSION_DENIED, codes.PermissionDenied},
		{fsmpb.Code_TOO_MANY_SESSIONS, codes.ResourceExhausted},
		{fsmpb.Code_SIGNATURE_INVALID, codes.PermissionDenied},
		{fsmpb.Code_WRONG_LEASE_SECRET, codes.PermissionDenied},
		{fsmpb.Code_HALTED, codes.Unavailable},
		{fsmpb.Code_QUEUED, codes.ResourceExhausted},
		{fsmpb.Code_QUEUE_TIMEOUT, codes.ResourceExhausted},
		{fsmpb.Code_QUEUE_LEFT, codes.ResourceExhausted},
		{fsmpb.Code(9999), codes.Internal},
	}
	covered := map[fsmpb.Code]bool{fsmpb.Code_OK: true}
	for _, tc := range tests {
		covered[tc.code] = true
		msg := "message for " + tc.code.String()
		err := resultStatus(tc.code, msg)
		st, ok := status.FromError(err)
		if !ok || err == nil {
			t.Errorf("resultStatus(%s) = %v, want a status error", tc.code, err)
			continue
		}
		if st.Code() != tc.want {
			t.Errorf("resultStatus(%s) code = %s, want %s", tc.code, st.Code(), tc.want)
		}
		if st.Message() != msg {
			t.Errorf("resultStatus(%s) message = %q, want %q", tc.code, st.Message(), msg)
		}
	}
	if err := resultStatus(fsmpb.Code_OK, "ignored"); err != nil {
		t.Errorf("resultStatus(OK) = %v, want nil", err)
	}
	// A refusal code added to the FSM must get a mapping (and a row here).
	for v, name := range fsmpb.Code_name {
		if !covered[fsmpb.Code(v)] {
			t.Errorf("fsmpb.Code %s has no row in this table", name)
		}
	}
}
