package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/triadlm/triad/fsm"
)

func newTestTracer(buf *bytes.Buffer) *tracer {
	var w io.Writer = io.Discard
	if buf != nil {
		w = buf
	}
	t := &tracer{log: slog.New(slog.NewJSONHandler(w, nil)).With("member", "alpha"), wake: make(chan struct{}, 1), features: map[string]bool{},
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triad_feature_denials_total", Help: "h"}, []string{"feature", "reason"}),
		lines:   prometheus.NewCounter(prometheus.CounterOpts{Name: "triad_trace_lines_total", Help: "h"}),
		drops:   prometheus.NewCounter(prometheus.CounterOpts{Name: "triad_trace_dropped_total", Help: "h"}),
	}
	return t
}

// TestTracerLinesAndDenials: traced events become one JSON line each with
// every field; untraced ones none; every denial is counted, under the
// feature's name only for a licensed feature; a replayed entry is marked.
func TestTracerLinesAndDenials(t *testing.T) {
	var buf bytes.Buffer
	tr := newTestTracer(&buf)
	tr.raftOpened(10)
	const at = int64(1_700_000_000_123)
	tr.observe([]fsm.LeaseEvent{
		{Index: 10, NowMs: at, Event: fsm.EventCheckout, Feature: "cad", Version: 2, User: "alice", Host: "ws1", LeaseID: 7, Count: 3, Traced: true},
		{Index: 11, NowMs: at + 1, Event: fsm.EventDenial, Feature: "cad", Version: 1, User: "bob", Host: "ws2", Count: 1, Reason: "no_seat", Message: "no seat left", Licensed: true, Traced: true},
		{Index: 12, NowMs: at + 2, Event: fsm.EventDenial, Feature: "made-up", Count: 1, Reason: "unknown_feature"},
		{Index: 13, NowMs: at + 3, Event: fsm.EventRelease, Feature: "sim", LeaseID: 8, Count: 1, Reason: "released"},
		{Index: 14, NowMs: at + 4, Event: fsm.EventExpiry, Feature: "cad", LeaseID: 9, Count: 1, Reason: "borrow ended", Borrowed: true, Traced: true},
	})
	tr.flush()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (the traced events):\n%s", len(lines), buf.String())
	}
	want := []string{
		"msg=usage trace member=alpha event=checkout feature=cad version=2 user=alice host=ws1 lease_id=7 count=3 reason= leader_time=2023-11-14T22:13:20.123Z leader_time_ms=1.700000000123e+12 index=10 message=<nil> borrowed=<nil> replay=true",
		"msg=usage trace member=alpha event=denial feature=cad version=1 user=bob host=ws2 lease_id=0 count=1 reason=no_seat leader_time=2023-11-14T22:13:20.124Z leader_time_ms=1.700000000124e+12 index=11 message=no seat left borrowed=<nil> replay=<nil>",
		"msg=usage trace member=alpha event=expiry feature=cad version=0 user= host= lease_id=9 count=1 reason=borrow ended leader_time=2023-11-14T22:13:20.127Z leader_time_ms=1.700000000127e+12 index=14 message=<nil> borrowed=true replay=<nil>",
	}
	keys := []string{"msg", "member", "event", "feature", "version", "user", "host", "lease_id", "count", "reason", "leader_time", "leader_time_ms", "index", "message", "borrowed", "replay"}
	for i, m := range lines {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
		}
		if got := strings.Join(parts, " "); got != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, want[i])
		}
		if m["level"] != "INFO" {
			t.Errorf("line %d level %v, want INFO", i, m["level"])
		}
	}
	const wantDenials = `
# HELP triad_feature_denials_total h
# TYPE triad_feature_denials_total counter
triad_feature_denials_total{feature="_other",reason="unknown_feature"} 1
triad_feature_denials_total{feature="cad",reason="no_seat"} 1
`
	if err := testutil.CollectAndCompare(tr.denials, strings.NewReader(wantDenials)); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(tr.lines); n != 3 {
		t.Errorf("triad_trace_lines_total %v, want 3", n)
	}
}

// TestTracerBounds: the queue drops beyond maxTraceQueue (counted and
// logged) and the denial counter's feature label is capped.
func TestTracerBounds(t *testing.T) {
	var buf bytes.Buffer
	tr := newTestTracer(&buf)
	ev := make([]fsm.LeaseEvent, maxTraceQueue+5)
	for i := range ev {
		ev[i] = fsm.LeaseEvent{Index: uint64(i + 1), Event: fsm.EventCheckout, Feature: "cad", Traced: true}
	}
	tr.observe(ev)
	tr.flush()
	if n := testutil.ToFloat64(tr.drops); n != 5 {
		t.Errorf("triad_trace_dropped_total %v, want 5", n)
	}
	if !strings.Contains(buf.String(), `"msg":"usage trace lines dropped: the log writer fell behind","member":"alpha","dropped":5`) {
		t.Errorf("the drop is not logged")
	}
	var denials []fsm.LeaseEvent
	for i := 0; i < maxFeatureSeries+10; i++ {
		denials = append(denials, fsm.LeaseEvent{Event: fsm.EventDenial, Feature: fmt.Sprintf("f%04d", i), Reason: "no_seat", Licensed: true})
	}
	tr.observe(denials)
	if n := testutil.CollectAndCount(tr.denials); n != maxFeatureSeries+1 {
		t.Errorf("%d denial series, want %d (capped, plus _other)", n, maxFeatureSeries+1)
	}
	if v := testutil.ToFloat64(tr.denials.WithLabelValues(otherFeature, "no_seat")); v != 10 {
		t.Errorf("_other counted %v denials, want 10", v)
	}
}

// TestFeatureTotalsCapped: beyond maxFeatureSeries features, the rest sum
// under _other.
func TestFeatureTotalsCapped(t *testing.T) {
	var usage []fsm.Usage
	for i := 0; i < maxFeatureSeries+3; i++ {
		usage = append(usage, fsm.Usage{Feature: fmt.Sprintf("f%04d", i), Version: 1, Capacity: 2, InUse: 1})
	}
	got := map[string]float64{}
	series := 0
	collectFeatureTotals(usage, func(d *prometheus.Desc, v float64, labels ...string) {
		series++
		if d == descFeatureCapacity {
			got[labels[0]] = v
		}
	})
	if series != 2*(maxFeatureSeries+1) || got[otherFeature] != 6 || got["f0000"] != 2 {
		t.Errorf("%d series, _other capacity %v, f0000 %v", series, got[otherFeature], got["f0000"])
	}
}
