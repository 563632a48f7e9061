package server

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// gRPC's warnings and errors reach the member's JSON log, marked
// component=grpc; its info chatter does not.
func TestGRPCLogsGoToTheMemberLog(t *testing.T) {
	var b strings.Builder
	old := grpcSlog.Load()
	defer func() { grpcSlog.Store(old) }()
	useGRPCLog(slog.New(slog.NewJSONHandler(&b, nil)).With("member", "m1"))
	var g grpcLogger
	g.Infof("connection state %d", 3)
	g.Warningf("transport closed %d", 1)
	g.Errorln("handshake failed")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q, want the warning and the error only", lines)
	}
	for i, want := range []struct{ level, msg string }{{"WARN", "transport closed 1"}, {"ERROR", "handshake failed"}} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("not JSON: %q", lines[i])
		}
		if rec["level"] != want.level || rec["msg"] != want.msg || rec["component"] != "grpc" || rec["member"] != "m1" {
			t.Errorf("line %d = %v, want %+v with component grpc and the member", i, rec, want)
		}
	}
}
