package server

import (
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

func TestDenialReason(t *testing.T) {
	tests := []struct {
		code fsmpb.Code
		msg  string
		want string
	}{
		{fsmpb.Code_NO_SEAT, "no seat left for cad v 1 (2 of 2 in use)", "no seat"},
		{fsmpb.Code_UNKNOWN_FEATURE, "unknown feature x", "unknown feature"},
		{fsmpb.Code_VERSION_TOO_NEW, "no license for cad at version 9", "version too new"},
		{fsmpb.Code_LICENSE_EXPIRED, "no valid license for cad", "license expired"},
		{fsmpb.Code_DENIED_BY_RULE, "denied by rule no-eve", "denied by rule no-eve"},
		{fsmpb.Code_DENIED_BY_RULE, "denied by rule bob-1: at most 1 seat(s) of cad, 1 in use", "denied by rule bob-1"},
		{fsmpb.Code_POOL_EXHAUSTED, "the countdown pool of sim is used up", "countdown pool used up"},
		{fsmpb.Code_BORROW_NOT_ALLOWED, "cad cannot be borrowed", "borrowing not allowed"},
		{fsmpb.Code_NOT_FOUND, "request r already produced lease 3, which has ended", "not found"},
	}
	for _, tc := range tests {
		if got := denialReason(tc.code, tc.msg); got != tc.want {
			t.Errorf("denialReason(%v, %q) = %q, want %q", tc.code, tc.msg, got, tc.want)
		}
	}
}
