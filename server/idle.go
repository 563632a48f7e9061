package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/fsmpb"
)

// idleFormat is the command format whose builds apply Renew.idle_ms.
const idleFormat = 4

// maxIdleMs bounds a reported idle time (a year): longer is surely a
// client bug, and every TIMEOUT rule is shorter anyway.
const maxIdleMs = 365 * 24 * 3600 * 1000

// idleReports checks the idle times a renewal reports (one per lease id at
// most, none negative, at most a year) and returns what to put in the
// Renew op: nil when no lease is idle, so renewals of products that never
// report idleness stay format 1.
func (s *Server) idleReports(ids []uint64, idle []int64) ([]int64, error) {
	if len(idle) > len(ids) {
		return nil, status.Errorf(codes.InvalidArgument, "%d idle times for %d lease ids: at most one per lease id", len(idle), len(ids))
	}
	any := false
	for i, ms := range idle {
		switch {
		case ms < 0:
			return nil, status.Errorf(codes.InvalidArgument, "idle time of lease %d is negative (%d ms): report 0 for an active lease", ids[i], ms)
		case ms > maxIdleMs:
			return nil, status.Errorf(codes.InvalidArgument, "idle time of lease %d is %d ms, more than a year: report the time since the product was last used", ids[i], ms)
		case ms > 0:
			any = true
		}
	}
	if !any {
		return nil, nil
	}
	return idle, nil
}

// dropIdleUnlessAllKnow removes the idle times from the Renew ops while
// some member is not known to apply them (format below 4, or not heard
// since this member started): a renewal is never refused for them, as a
// gated command would be; idle timeouts start once every member runs
// format 4 (docs/upgrading.md). Called on the receiving member and again
// on the leader for forwarded ops.
func (s *Server) dropIdleUnlessAllKnow(ops []*fsmpb.Op) {
	checked, ok := false, false
	for _, o := range ops {
		r := o.GetRenew()
		if len(r.GetIdleMs()) == 0 {
			continue
		}
		if !checked {
			checked, ok = true, s.checkFormatNeed(idleFormat, "batch.renew.idle_ms", "") == nil
		}
		if !ok {
			r.IdleMs = nil
		}
	}
}
