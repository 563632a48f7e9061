package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
)

// Usage history reports over the Admin API (HistoryReport) and the HTTP
// port (/v1/history/<kind>): one implementation, the same JSON
// (docs/reports.md, /work/briefs/contract14.md).

// HistoryKinds are the reports served.
var HistoryKinds = []string{"usage", "utilization", "users", "compliance"}

// startHistory commits StartHistory once every member applies format 4
// (leader only; the leader loop calls it every tick until it is done).
func (s *Server) startHistory(ctx context.Context) {
	if s.fsm.Cluster() == nil || s.fsm.HistoryStarted() {
		return
	}
	cmd := &fsmpb.Command{Cmd: &fsmpb.Command_StartHistory{StartHistory: &fsmpb.StartHistory{}}}
	if s.checkFormat(cmd) != nil {
		return // an older member: waits for the upgrade (leaderApply would log it every second)
	}
	s.log.Info("starting the usage history")
	s.leaderApply(ctx, cmd)
}

// parseHistoryTime reads a report bound: Unix ms, an RFC 3339 time, a date
// (YYYY-MM-DD, UTC midnight), "now", or a duration before now such as 7d,
// 12h, 30m, 2w (now is the last committed leader time).
func parseHistoryTime(v string, nowMs int64) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "now" {
		return nowMs, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UnixMilli(), nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t.UnixMilli(), nil
	}
	if d, err := parseHistoryDuration(v); err == nil {
		return nowMs - d.Milliseconds(), nil
	}
	return 0, fmt.Errorf("%q is not a time: give Unix milliseconds, an RFC 3339 time, a date (2026-01-31), now, or a duration before now (7d, 12h, 30m, 2w)", v)
}

func parseHistoryDuration(v string) (time.Duration, error) {
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(v, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(v, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit != 0 {
		n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSuffix(v, "d"), "w"), 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q", v)
		}
		return time.Duration(n * float64(unit)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", v)
	}
	return d, nil
}

// historyQuery builds a query from the parameters; the error names the bad
// parameter.
func historyQuery(kind string, p map[string]string, nowMs int64) (fsm.HistoryQuery, error) {
	known := map[string]bool{"feature": true, "from": true, "to": true, "step": true, "by": true, "top": true, "levels": true}
	for k := range p {
		if !known[k] {
			return fsm.HistoryQuery{}, fmt.Errorf("unknown parameter %q: want feature, from, to, step, by, top or levels", k)
		}
	}
	q := fsm.HistoryQuery{Feature: p["feature"], Step: "hour", By: "user", To: nowMs + 1, Levels: fsm.DefaultComplianceLevels}
	q.From = q.To - 24*time.Hour.Milliseconds()
	var err error
	if v, ok := p["to"]; ok && v != "" {
		if q.To, err = parseHistoryTime(v, nowMs); err != nil {
			return q, fmt.Errorf("to: %v", err)
		}
		q.From = q.To - 24*time.Hour.Milliseconds()
	}
	if v, ok := p["from"]; ok && v != "" {
		if q.From, err = parseHistoryTime(v, nowMs); err != nil {
			return q, fmt.Errorf("from: %v", err)
		}
	}
	if q.From >= q.To {
		return q, fmt.Errorf("from: %d is not before to (%d)", q.From, q.To)
	}
	if v := p["step"]; v != "" {
		switch v {
		case "minute", "hour", "day", "month":
			q.Step = v
		default:
			return q, fmt.Errorf("step: %q: want minute, hour, day or month", v)
		}
	}
	if v := p["by"]; v != "" {
		switch v {
		case "user", "host", "group":
			q.By = v
		default:
			return q, fmt.Errorf("by: %q: want user, host or group", v)
		}
	}
	if v := p["top"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return q, fmt.Errorf("top: %q: want a number of rows (0 = all)", v)
		}
		q.Top = n
	}
	if v := p["levels"]; v != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 4 {
			return q, fmt.Errorf("levels: %q: want four ascending percentages of the entitlement, like 90,100,110,125", v)
		}
		for i, s := range parts {
			n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || n < 0 || (i > 0 && n < q.Levels[i-1]) {
				return q, fmt.Errorf("levels: %q: want four ascending percentages of the entitlement, like 90,100,110,125", v)
			}
			q.Levels[i] = n
		}
	}
	if kind == "utilization" && q.Feature == "" {
		return q, fmt.Errorf("feature: the utilization report is per feature: give feature=NAME")
	}
	return q, nil
}

// HistoryReport computes one report as JSON (admin.Backend; HTTP).
// Errors are InvalidArgument (naming the parameter) or FailedPrecondition
// (the history has not started).
func (s *Server) HistoryReport(ctx context.Context, kind string, params map[string]string) ([]byte, error) {
	// Catch up with the leader's commit index first (best effort: a member
	// cut off answers with what it applied).
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_ = s.readIndex(rctx)
	cancel()
	nowMs, _ := s.fsm.HistoryNow()
	q, err := historyQuery(kind, params, nowMs)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var out any
	switch kind {
	case "usage":
		one, all, e := s.fsm.HistoryUsage(q)
		if one != nil {
			out = one
		} else {
			out = all
		}
		err = e
	case "utilization":
		out, err = s.fsm.HistoryUtilization(q)
	case "users":
		out, err = s.fsm.HistoryUsers(q)
	case "compliance":
		out, err = s.fsm.HistoryCompliance(q)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "kind: %q: want one of %s", kind, strings.Join(HistoryKinds, ", "))
	}
	if err == fsm.ErrNoHistory {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return json.Marshal(out)
}

// historyHTTP serves GET /v1/history/{kind}.
func (s *Server) historyHTTP(w http.ResponseWriter, r *http.Request) {
	s.allowCORS(w, r)
	params := map[string]string{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			params[k] = v[len(v)-1]
		}
	}
	b, err := s.HistoryReport(r.Context(), r.PathValue("kind"), params)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusBadRequest
		if status.Code(err) == codes.FailedPrecondition {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": status.Convert(err).Message()})
		return
	}
	w.Write(b)
	w.Write([]byte("\n"))
}
