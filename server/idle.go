package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// idleFormat is the command format whose builds apply Renew.idle_ms.
const idleFormat = 4

// maxIdleMs bounds a reported idle time (a year): longer is surely a
// client bug, and every TIMEOUT rule is shorter anyway.
const maxIdleMs = 365 * 24 * 3600 * 1000

// idleReports checks the idle times a renewal reports (one per lease id at
// most, none negative) and returns what to replicate: nothing when no
// lease is idle, or while some member is known to run a build before
// idle timeouts (it would ignore them; such renewals are then accepted
// without the idle report, and idle timeouts start once every member is
// upgraded: docs/upgrading.md).
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
	if s.fsm.MaxFormat() < idleFormat {
		return nil, nil
	}
	if _, _, older := s.memberBelowFormat(idleFormat); older {
		return nil, nil
	}
	return idle, nil
}
