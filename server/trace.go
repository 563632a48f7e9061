package server

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Usage tracing (issue 14, docs/admin.md "Usage tracing") and the
// cluster-wide denial counter. The FSM reports every lease event it
// applies to the lease observer (fsm/trace.go), on every member, in log
// order; the observer runs under the FSM's lock, so it only counts and
// queues. One goroutine writes the traced events to the member's log as
// JSON lines ("usage trace").

// maxTraceQueue bounds the trace lines waiting to be written; beyond it
// they are dropped and the drop is logged and counted.
const maxTraceQueue = 100000

// maxFeatureSeries caps the feature label values of the per-feature
// metrics; further features count under "_other".
const maxFeatureSeries = 1000

type tracer struct {
	log *slog.Logger
	// replayUpTo: entries up to this Raft index were in this member's log
	// when it started; their lines may have been written before it stopped
	// and carry "replay": true. MaxUint64 until Raft is open.
	replayUpTo atomic.Uint64

	mu      sync.Mutex
	q       []fsm.LeaseEvent
	dropped uint64
	wake    chan struct{}

	denials *prometheus.CounterVec // triad_feature_denials_total
	lines   prometheus.Counter     // triad_trace_lines_total
	drops   prometheus.Counter     // triad_trace_dropped_total
	// features holds the feature label values in use (capped).
	features map[string]bool
}

// openTracer hooks the tracer to the FSM. Call it before Raft starts
// applying entries.
func (s *Server) openTracer() {
	t := &tracer{log: s.log, wake: make(chan struct{}, 1), features: map[string]bool{},
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triad_feature_denials_total",
			Help: "Checkouts the cluster refused, by feature and reason, as this member's state machine applied them (every member counts every refusal of the log it applied since it started).",
		}, []string{"feature", "reason"}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triad_trace_lines_total",
			Help: "Usage trace lines this member wrote to its log.",
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triad_trace_dropped_total",
			Help: "Usage trace lines this member dropped because its log writer fell behind.",
		}),
	}
	t.replayUpTo.Store(math.MaxUint64)
	s.tracer = t
	s.fsm.SetLeaseObserver(t.observe)
	s.goRun(func() { t.run(s.ctx) })
}

// raftOpened records how far this member's log reached when it started.
func (t *tracer) raftOpened(lastIndex uint64) {
	t.replayUpTo.Store(lastIndex)
}

// registerTraceMetrics adds the tracer's counters to the member's registry.
func (s *Server) registerTraceMetrics() {
	if s.tracer != nil && s.metrics != nil {
		s.metrics.reg.MustRegister(s.tracer.denials, s.tracer.lines, s.tracer.drops)
	}
}

// observe counts denials and queues traced events (under the FSM's lock:
// no I/O).
func (t *tracer) observe(events []fsm.LeaseEvent) {
	queued := false
	for _, e := range events {
		if e.Event == fsm.EventDenial {
			t.denials.WithLabelValues(t.featureLabel(e.Feature, e.Licensed), e.Reason).Inc()
		}
		if !e.Traced {
			continue
		}
		t.mu.Lock()
		if len(t.q) >= maxTraceQueue {
			t.dropped++
		} else {
			t.q = append(t.q, e)
			queued = true
		}
		t.mu.Unlock()
	}
	if queued {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// featureLabel is feature for a licensed feature while fewer than
// maxFeatureSeries are in use, else "_other": a client's made-up name
// never creates a series.
func (t *tracer) featureLabel(feature string, licensed bool) string {
	if !licensed {
		return otherFeature
	}
	if !t.features[feature] {
		if len(t.features) >= maxFeatureSeries {
			return otherFeature
		}
		t.features[feature] = true
	}
	return feature
}

func (t *tracer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			t.flush()
			return
		case <-t.wake:
		}
		t.flush()
	}
}

// flush writes the queued events, one JSON log line each.
func (t *tracer) flush() {
	t.mu.Lock()
	q, dropped := t.q, t.dropped
	t.q, t.dropped = nil, 0
	t.mu.Unlock()
	if dropped > 0 {
		t.drops.Add(float64(dropped))
		t.log.Warn("usage trace lines dropped: the log writer fell behind", "dropped", dropped)
	}
	replay := t.replayUpTo.Load()
	for _, e := range q {
		t.log.LogAttrs(context.Background(), slog.LevelInfo, "usage trace", traceAttrs(e, e.Index <= replay)...)
	}
	t.lines.Add(float64(len(q)))
}

// traceAttrs are the fields of one trace line (docs/admin.md lists them).
func traceAttrs(e fsm.LeaseEvent, replay bool) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("event", e.Event),
		slog.String("feature", e.Feature),
		slog.Uint64("version", uint64(e.Version)),
		slog.String("user", e.User),
		slog.String("host", e.Host),
		slog.Uint64("lease_id", e.LeaseID),
		slog.Uint64("count", uint64(e.Count)),
		slog.String("reason", e.Reason),
		slog.String("leader_time", time.UnixMilli(e.NowMs).UTC().Format("2006-01-02T15:04:05.000Z07:00")),
		slog.Int64("leader_time_ms", e.NowMs),
		slog.Uint64("index", e.Index),
	}
	if e.Message != "" {
		attrs = append(attrs, slog.String("message", e.Message))
	}
	if e.Borrowed {
		attrs = append(attrs, slog.Bool("borrowed", true))
	}
	if replay {
		attrs = append(attrs, slog.Bool("replay", true))
	}
	return attrs
}

// SetTrace switches tracing on or off for a feature or a license, or off
// for everything (admin.TraceBackend).
func (s *Server) SetTrace(ctx context.Context, sessionID string, req *triadv1.TraceSetRequest) (*triadv1.TraceShowResponse, error) {
	cmd := &fsmpb.SetTrace{SessionId: sessionID, On: req.GetOn(), Feature: req.GetFeature(), Serial: req.GetSerial(), AllOff: req.GetAllOff()}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_SetTrace{SetTrace: cmd}}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, err
	}
	s.log.Info("usage tracing changed", "result", res.GetMessage())
	if err := s.readIndex(ctx); err != nil {
		return nil, toStatus(err)
	}
	out := s.Trace(ctx)
	out.Message = res.GetMessage()
	return out, nil
}

// Trace lists what is traced (admin.TraceBackend).
func (s *Server) Trace(ctx context.Context) *triadv1.TraceShowResponse {
	f, serials := s.fsm.Trace()
	return &triadv1.TraceShowResponse{Features: f, Serials: serials}
}

// Per-feature gauges (all versions together), for the dashboard's charts
// and Grafana (docs/metrics.md).
var (
	descFeatureInUse = prometheus.NewDesc("triad_feature_seats_in_use",
		"Seats in use by live leases, by licensed feature (all versions).", []string{"feature"}, nil)
	descFeatureCapacity = prometheus.NewDesc("triad_feature_capacity",
		"Seats the valid licenses grant, by licensed feature (all versions).", []string{"feature"}, nil)
)

// collectFeatureTotals sums the usage rows per feature, in feature order;
// beyond maxFeatureSeries features the rest are summed under "_other".
func collectFeatureTotals(usage []fsm.Usage, gauge func(d *prometheus.Desc, v float64, labels ...string)) {
	type total struct{ inUse, capacity float64 }
	totals := map[string]*total{}
	var names []string
	for _, u := range usage {
		name := u.Feature
		if _, ok := totals[name]; !ok && len(names) >= maxFeatureSeries {
			name = otherFeature
		}
		t, ok := totals[name]
		if !ok {
			t = &total{}
			totals[name] = t
			names = append(names, name)
		}
		t.inUse += float64(u.InUse)
		t.capacity += float64(u.Capacity)
	}
	for _, name := range names {
		gauge(descFeatureInUse, totals[name].inUse, name)
		gauge(descFeatureCapacity, totals[name].capacity, name)
	}
}
