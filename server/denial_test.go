package server

import (
	"testing"
	"time"

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
		{fsmpb.Code_WRONG_LEASE_SECRET, "lease 3: wrong lease secret", "wrong lease secret"},
	}
	for _, tc := range tests {
		if got := denialReason(tc.code, tc.msg); got != tc.want {
			t.Errorf("denialReason(%v, %q) = %q, want %q", tc.code, tc.msg, got, tc.want)
		}
	}
}

func TestSweepDue(t *testing.T) {
	mid := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		now  time.Time
		last time.Time
		on   bool
		want bool
	}{
		{mid.Add(2 * time.Second), time.Time{}, true, true},
		{mid.Add(2 * time.Second), time.Time{}, false, false},                                             // setting off
		{mid.Add(2 * time.Second), mid, true, false},                                                      // already swept today
		{mid.Add(2 * time.Minute), time.Time{}, true, false},                                              // not at midnight
		{mid.Add(-2 * time.Second), mid.Add(-24 * time.Hour), true, false},                                // 23:59:58
		{mid.Add(30 * time.Second).In(time.FixedZone("CET", 3600)), mid.Add(-24 * time.Hour), true, true}, // UTC, not local
	}
	for i, tc := range tests {
		day, got := sweepDue(tc.now, tc.last, tc.on)
		if got != tc.want || (got && !day.Equal(mid)) {
			t.Errorf("case %d: sweepDue(%v, %v, %v) = %v, %v; want %v", i, tc.now, tc.last, tc.on, day, got, tc.want)
		}
	}
}
