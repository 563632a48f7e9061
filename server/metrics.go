package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
)

// Metrics (docs/metrics.md lists them). Each Server has its own registry,
// never the global one, so that several members can share a test process.
// Counters and histograms are updated on the request path; everything that
// describes state (links, Raft, seats) is read when Prometheus scrapes, by
// metricsCollector, so it can never go stale.

// Request methods timed by triad_request_duration_seconds.
const (
	methodCheckout = iota
	methodRenew
	methodRelease
	methodFeatures
	numMethods
)

var methodNames = [numMethods]string{"Checkout", "Renew", "Release", "Features"}

// resultError is the checkout result for transport and leader failures.
const resultError = "error"

// otherFeature replaces the feature label when the cluster does not know
// the feature (or never judged the request), so arbitrary client input
// cannot create time series. The feature name is in the denial log.
const otherFeature = "_other"

// codeNames are the fsmpb.Code names in lower case, computed once so the
// request path does not allocate.
var codeNames = func() map[fsmpb.Code]string {
	m := make(map[fsmpb.Code]string, len(fsmpb.Code_name))
	for v, name := range fsmpb.Code_name {
		m[fsmpb.Code(v)] = strings.ToLower(name)
	}
	return m
}()

func codeName(c fsmpb.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "code_unknown"
}

// featureLabel keeps the feature name only for results that prove the
// cluster knows it.
//
// Every code the state machine gives only for a feature some license or
// rule names keeps the feature (rule and countdown-pool denials
// included); only unknown features and malformed requests, whose names a
// caller makes up, count under _other.
func featureLabel(c fsmpb.Code, feature string) string {
	switch c {
	case fsmpb.Code_UNKNOWN_FEATURE, fsmpb.Code_INVALID_ARGUMENT, fsmpb.Code_NOT_FORMED, fsmpb.Code_NOT_FOUND:
		return otherFeature
	}
	return feature
}

var (
	latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// Renew carries up to maxLeaseIDs ids.
	renewBuckets = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 100000}
	// A batcher flushes at most 1024 ops per entry.
	batchBuckets = prometheus.ExponentialBuckets(1, 2, 11)
)

// metrics holds the instruments of one member. A nil *metrics is valid and
// records nothing (handlers tested without a server).
type metrics struct {
	reg        *prometheus.Registry
	checkouts  *prometheus.CounterVec
	denials    *prometheus.CounterVec
	duration   [numMethods]prometheus.Observer
	renewBatch prometheus.Histogram
	raftBatch  prometheus.Histogram
	forwarded  prometheus.Counter
	fwdCalls   *prometheus.CounterVec
}

// newMetrics makes the instruments and a registry holding them, the
// scrape-time collector over src, and the Go runtime and process collectors.
func newMetrics(src metricsSource) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checkouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triad_checkouts_total",
			Help: "Checkouts handled by this member, by feature and result (fsmpb code in lower case, or error for transport and leader failures).",
		}, []string{"feature", "result"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triad_denials_total",
			Help: "Checkouts refused by the state machine, by feature and reason.",
		}, []string{"feature", "reason"}),
		renewBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "triad_renew_batch_size",
			Help:    "Lease ids per Renew call.",
			Buckets: renewBuckets,
		}),
		raftBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "triad_raft_batch_ops",
			Help:    "Lease operations per Batch log entry proposed by the leader.",
			Buckets: batchBuckets,
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triad_forwarded_ops_total",
			Help: "Lease operations this member forwarded to the leader as a follower.",
		}),
		fwdCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triad_forwarded_batches_total",
			Help: "Batches this member forwarded to the leader as a follower, by way: stream (Peer.ForwardStream) or unary (Peer.Forward, to a leader without the stream).",
		}, []string{"via"}),
	}
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "triad_request_duration_seconds",
		Help:    "Time to answer a Licensing request, by method.",
		Buckets: latencyBuckets,
	}, []string{"method"})
	for i, name := range methodNames {
		m.duration[i] = dur.WithLabelValues(name)
	}
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "triad_build_info",
		Help: "Always 1; the labels name this member's build (version, commit, Go version, highest Raft command format applied).",
		ConstLabels: prometheus.Labels{"version": Version, "commit": bi.Commit, "goversion": bi.GoVersion,
			"format": strconv.FormatUint(uint64(src.Format), 10)},
	})
	build.Set(1)
	m.reg.MustRegister(build)
	m.reg.MustRegister(m.checkouts, m.denials, dur, m.renewBatch, m.raftBatch, m.forwarded, m.fwdCalls,
		&metricsCollector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the text exposition of this member's registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observe records the duration of a Licensing request started at start;
// call it deferred: defer l.m.observe(methodRenew, time.Now()).
func (m *metrics) observe(method int, start time.Time) {
	if m == nil {
		return
	}
	m.duration[method].Observe(time.Since(start).Seconds())
}

// checkout counts one checkout the state machine judged; a refusal also
// counts as a denial.
func (m *metrics) checkout(feature string, code fsmpb.Code) {
	if m == nil {
		return
	}
	f, name := featureLabel(code, feature), codeName(code)
	m.checkouts.WithLabelValues(f, name).Inc()
	if code != fsmpb.Code_OK {
		m.denials.WithLabelValues(f, name).Inc()
	}
}

// checkoutError counts a checkout that failed before the state machine
// judged it (no leader, forwarding failed, timeout).
func (m *metrics) checkoutError() {
	if m == nil {
		return
	}
	m.checkouts.WithLabelValues(otherFeature, resultError).Inc()
}

func (m *metrics) renewIDs(n int) {
	if m == nil {
		return
	}
	m.renewBatch.Observe(float64(n))
}

func (m *metrics) raftBatchOps(n int) {
	if m == nil {
		return
	}
	m.raftBatch.Observe(float64(n))
}

func (m *metrics) forwardedOps(n int) {
	if m == nil {
		return
	}
	m.forwarded.Add(float64(n))
}

// forwardedBatch counts a batch sent to the leader, via "stream" or "unary".
func (m *metrics) forwardedBatch(via string) {
	if m == nil {
		return
	}
	m.fwdCalls.WithLabelValues(via).Inc()
}

// raftInfo is the Raft state reported at scrape time.
type raftInfo struct {
	State   string // leader, follower, candidate or shutdown
	Term    uint64
	Commit  uint64
	Applied uint64
}

// metricsSource is what the collector reads at scrape time. The server
// fills it from Raft, the FSM and the membership monitor; tests fill it
// with fixed values.
type metricsSource struct {
	Self       string
	Configured func() bool              // false until the cluster is formed
	Links      func() []membership.Link // all links, as the monitor sees them
	Raft       func() raftInfo
	Usage      func() []fsm.Usage
	Leases     func() int
	Leader     func() string // the leader's name, "" when none is known
	Format     uint32        // highest Raft command format applied (triad_build_info)
	// Queued checkouts per feature (nil: none). Only features a license
	// grants can have waiters, so the label stays bounded.
	Queued func() map[string]int
}

// metricsSource reads the live member.
func (s *Server) metricsSource() metricsSource {
	return metricsSource{
		Self:       s.cfg.Name,
		Configured: func() bool { return s.mode() != ModeUnconfigured },
		Links:      s.mon.Links,
		Raft: func() raftInfo {
			return raftInfo{
				State:   strings.ToLower(s.node.raft.State().String()),
				Term:    s.term(),
				Commit:  s.node.raft.CommitIndex(),
				Applied: s.node.raft.AppliedIndex(),
			}
		},
		Usage:  func() []fsm.Usage { return s.fsm.Usage(s.nowMs()) },
		Leases: func() int { return len(s.fsm.Leases()) },
		Leader: func() string { _, name := s.leaderAddr(); return name },
		Format: s.fsm.MaxFormat(),
		Queued: s.fsm.QueueLengths,
	}
}

var (
	descLinkUp = prometheus.NewDesc("triad_link_up",
		"1 when the link from this member to peer is up, 0 when down or unknown.", []string{"peer"}, nil)
	descLinkState = prometheus.NewDesc("triad_link_state",
		"1 for the current state of each link of the cluster (a < b), 0 for the other states.", []string{"a", "b", "state"}, nil)
	descClusterStatus = prometheus.NewDesc("triad_cluster_status",
		"2 operational, 1 partially operational, 0 not operational (no leader, no link up, or not formed).", nil, nil)
	descRaftState = prometheus.NewDesc("triad_raft_state",
		"1 for this member's current Raft state, 0 for the others.", []string{"state"}, nil)
	descRaftTerm    = prometheus.NewDesc("triad_raft_term", "Current Raft term.", nil, nil)
	descRaftCommit  = prometheus.NewDesc("triad_raft_commit_index", "Raft commit index known to this member.", nil, nil)
	descRaftApplied = prometheus.NewDesc("triad_raft_applied_index", "Last Raft index applied to this member's state machine.", nil, nil)
	descSeatsInUse  = prometheus.NewDesc("triad_seats_in_use",
		"Seats in use by live leases, by feature and licensed version.", []string{"feature", "version"}, nil)
	descSeatsCapacity = prometheus.NewDesc("triad_seats_capacity",
		"Seats the valid licenses grant, by feature and version.", []string{"feature", "version"}, nil)
	descLeases = prometheus.NewDesc("triad_leases", "Live leases.", nil, nil)
	descQueued = prometheus.NewDesc("triad_queue_length",
		"Queued checkouts waiting for a seat, by feature (features with none are not listed).", []string{"feature"}, nil)

	linkStates = []string{membership.LinkUp, membership.LinkDown, membership.LinkUnknown}
	raftStates = []string{"leader", "follower", "candidate", "shutdown"}
)

// metricsCollector produces the state gauges when scraped.
type metricsCollector struct {
	src metricsSource
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLinkUp, descLinkState, descClusterStatus, descRaftState,
		descRaftTerm, descRaftCommit, descRaftApplied, descSeatsInUse, descSeatsCapacity, descLeases, descQueued,
		descFeatureInUse, descFeatureCapacity} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bool01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	configured := c.src.Configured()
	var links []membership.Link
	if configured {
		links = c.src.Links()
	}
	for _, l := range links {
		switch c.src.Self {
		case l.A:
			gauge(descLinkUp, bool01(l.State == membership.LinkUp), l.B)
		case l.B:
			gauge(descLinkUp, bool01(l.State == membership.LinkUp), l.A)
		}
		for _, st := range linkStates {
			gauge(descLinkState, bool01(l.State == st), l.A, l.B, st)
		}
	}
	status := 0.0
	if configured {
		switch membership.StatusWithLeader(links, c.src.Leader()) {
		case membership.StatusOperational:
			status = 2
		case membership.StatusPartiallyOperational:
			status = 1
		}
	}
	gauge(descClusterStatus, status)

	ri := c.src.Raft()
	for _, st := range raftStates {
		gauge(descRaftState, bool01(ri.State == st), st)
	}
	gauge(descRaftTerm, float64(ri.Term))
	gauge(descRaftCommit, float64(ri.Commit))
	gauge(descRaftApplied, float64(ri.Applied))

	usage := c.src.Usage()
	for _, u := range usage {
		v := featver.Display(u.Version, u.VersionText)
		gauge(descSeatsInUse, float64(u.InUse), u.Feature, v)
		gauge(descSeatsCapacity, float64(u.Capacity), u.Feature, v)
	}
	collectFeatureTotals(usage, gauge)
	gauge(descLeases, float64(c.src.Leases()))
	if c.src.Queued != nil {
		for f, n := range c.src.Queued() {
			gauge(descQueued, float64(n), f)
		}
	}
}
