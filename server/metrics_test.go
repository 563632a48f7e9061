package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/proto/fsmpb"
)

// fakeSource is a member seen from outside Raft: alpha leads a three-member
// cluster; tests change the fields between scrapes.
type fakeSource struct {
	configured bool
	links      []membership.Link
	raft       raftInfo
	usage      []fsm.Usage
	leases     int
	leader     string
}

func (f *fakeSource) source() metricsSource {
	return metricsSource{
		Self:       "alpha",
		Configured: func() bool { return f.configured },
		Links:      func() []membership.Link { return f.links },
		Raft:       func() raftInfo { return f.raft },
		Usage:      func() []fsm.Usage { return f.usage },
		Leases:     func() int { return f.leases },
		Leader:     func() string { return f.leader },
	}
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		configured: true,
		links: []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkUp},
			{A: "alpha", B: "charlie", State: membership.LinkDown},
			{A: "bravo", B: "charlie", State: membership.LinkUnknown},
		},
		raft:   raftInfo{State: "leader", Term: 7, Commit: 42, Applied: 41},
		usage:  []fsm.Usage{{Feature: "cad", Version: 1, Capacity: 3, InUse: 2}, {Feature: "cad", Version: 2, Capacity: 1}},
		leases: 2,
		leader: "alpha",
	}
}

func TestMetricsCheckoutCountersAndDenials(t *testing.T) {
	m := newMetrics(newFakeSource().source())
	m.checkout("cad", fsmpb.Code_OK)
	m.checkout("cad", fsmpb.Code_OK)
	m.checkout("cad", fsmpb.Code_NO_SEAT)
	m.checkout("cad", fsmpb.Code_VERSION_TOO_NEW)
	m.checkout("cad", fsmpb.Code_DENIED_BY_RULE)
	m.checkout("cad", fsmpb.Code_POOL_EXHAUSTED)
	m.checkout("random-name-1", fsmpb.Code_UNKNOWN_FEATURE)
	m.checkout("random-name-2", fsmpb.Code_UNKNOWN_FEATURE)
	m.checkoutError()

	for _, c := range []struct {
		feature, result string
		want            float64
	}{
		{"cad", "ok", 2},
		{"cad", "no_seat", 1},
		{"cad", "version_too_new", 1},
		{"cad", "denied_by_rule", 1},
		{"cad", "pool_exhausted", 1},
		{otherFeature, "unknown_feature", 2},
		{otherFeature, "error", 1},
	} {
		if got := testutil.ToFloat64(m.checkouts.WithLabelValues(c.feature, c.result)); got != c.want {
			t.Errorf("triad_checkouts_total{feature=%q,result=%q} = %v, want %v", c.feature, c.result, got, c.want)
		}
	}
	// Unknown feature names never become label values.
	if n := testutil.CollectAndCount(m.checkouts); n != 7 {
		t.Errorf("triad_checkouts_total has %d series, want 7", n)
	}

	const wantDenials = `
# HELP triad_denials_total Checkouts refused by the state machine, by feature and reason.
# TYPE triad_denials_total counter
triad_denials_total{feature="_other",reason="unknown_feature"} 2
triad_denials_total{feature="cad",reason="denied_by_rule"} 1
triad_denials_total{feature="cad",reason="no_seat"} 1
triad_denials_total{feature="cad",reason="pool_exhausted"} 1
triad_denials_total{feature="cad",reason="version_too_new"} 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(wantDenials), "triad_denials_total"); err != nil {
		t.Error(err)
	}
}

func TestMetricsCodeNames(t *testing.T) {
	for code, want := range map[fsmpb.Code]string{
		fsmpb.Code_OK: "ok", fsmpb.Code_NO_SEAT: "no_seat", fsmpb.Code_UNKNOWN_FEATURE: "unknown_feature",
		fsmpb.Code_LICENSE_NOT_YET_VALID: "license_not_yet_valid", fsmpb.Code(999): "code_unknown",
	} {
		if got := codeName(code); got != want {
			t.Errorf("codeName(%v) = %q, want %q", code, got, want)
		}
	}
}

// histogram returns the sample count and sum of the histogram name with
// the given label (or the only one when label is "").
func histogram(t *testing.T, m *metrics, name, label, value string) (uint64, float64) {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if label == "" || hasLabel(mt, label, value) {
				return mt.GetHistogram().GetSampleCount(), mt.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0, 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func TestMetricsHistograms(t *testing.T) {
	m := newMetrics(newFakeSource().source())
	m.observe(methodRenew, time.Now().Add(-20*time.Millisecond))
	m.observe(methodRenew, time.Now())
	m.observe(methodCheckout, time.Now().Add(-3*time.Millisecond))
	m.renewIDs(3)
	m.renewIDs(300)
	m.raftBatchOps(1)
	m.raftBatchOps(64)
	m.raftBatchOps(7)
	m.forwardedOps(4)
	m.forwardedOps(5)

	if n, sum := histogram(t, m, "triad_request_duration_seconds", "method", "Renew"); n != 2 || sum < 0.02 || sum > 5 {
		t.Errorf("Renew durations: count %d sum %v, want 2 and about 0.02 s", n, sum)
	}
	if n, sum := histogram(t, m, "triad_request_duration_seconds", "method", "Checkout"); n != 1 || sum < 0.003 {
		t.Errorf("Checkout durations: count %d sum %v, want 1 and at least 0.003 s", n, sum)
	}
	// Every method has its series from the start (pre-resolved children).
	for _, method := range []string{"Release", "Features"} {
		if n, _ := histogram(t, m, "triad_request_duration_seconds", "method", method); n != 0 {
			t.Errorf("%s durations: count %d, want 0", method, n)
		}
	}
	if n, sum := histogram(t, m, "triad_renew_batch_size", "", ""); n != 2 || sum != 303 {
		t.Errorf("renew batch size: count %d sum %v, want 2 and 303", n, sum)
	}
	if n, sum := histogram(t, m, "triad_raft_batch_ops", "", ""); n != 3 || sum != 72 {
		t.Errorf("raft batch ops: count %d sum %v, want 3 and 72", n, sum)
	}
	if got := testutil.ToFloat64(m.forwarded); got != 9 {
		t.Errorf("triad_forwarded_ops_total = %v, want 9", got)
	}
}

// Each member has its own registry: two in one process neither collide nor
// share counts.
func TestMetricsRegistryPerMember(t *testing.T) {
	a, b := newMetrics(newFakeSource().source()), newMetrics(newFakeSource().source())
	a.checkout("cad", fsmpb.Code_OK)
	if got := testutil.ToFloat64(b.checkouts.WithLabelValues("cad", "ok")); got != 0 {
		t.Errorf("second member counted %v checkouts of the first", got)
	}
}

// A nil *metrics (handlers tested without a server) records nothing and
// does not panic.
func TestMetricsNil(t *testing.T) {
	var m *metrics
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("nil metrics panicked: %v", r)
		}
	}()
	m.observe(methodCheckout, time.Now())
	m.checkout("cad", fsmpb.Code_OK)
	m.checkoutError()
	m.renewIDs(1)
	m.raftBatchOps(1)
	m.forwardedOps(1)
}

func TestMetricsCollectorReadsSourceAtScrape(t *testing.T) {
	src := newFakeSource()
	c := &metricsCollector{src: src.source()}
	const want = `
# HELP triad_cluster_status 2 operational, 1 partially operational, 0 not operational (no leader, no link up, or not formed).
# TYPE triad_cluster_status gauge
triad_cluster_status 1
# HELP triad_feature_capacity Seats the valid licenses grant, by licensed feature (all versions).
# TYPE triad_feature_capacity gauge
triad_feature_capacity{feature="cad"} 4
# HELP triad_feature_seats_in_use Seats in use by live leases, by licensed feature (all versions).
# TYPE triad_feature_seats_in_use gauge
triad_feature_seats_in_use{feature="cad"} 2
# HELP triad_leases Live leases.
# TYPE triad_leases gauge
triad_leases 2
# HELP triad_link_state 1 for the current state of each link of the cluster (a < b), 0 for the other states.
# TYPE triad_link_state gauge
triad_link_state{a="alpha",b="bravo",state="down"} 0
triad_link_state{a="alpha",b="bravo",state="unknown"} 0
triad_link_state{a="alpha",b="bravo",state="up"} 1
triad_link_state{a="alpha",b="charlie",state="down"} 1
triad_link_state{a="alpha",b="charlie",state="unknown"} 0
triad_link_state{a="alpha",b="charlie",state="up"} 0
triad_link_state{a="bravo",b="charlie",state="down"} 0
triad_link_state{a="bravo",b="charlie",state="unknown"} 1
triad_link_state{a="bravo",b="charlie",state="up"} 0
# HELP triad_link_up 1 when the link from this member to peer is up, 0 when down or unknown.
# TYPE triad_link_up gauge
triad_link_up{peer="bravo"} 1
triad_link_up{peer="charlie"} 0
# HELP triad_raft_applied_index Last Raft index applied to this member's state machine.
# TYPE triad_raft_applied_index gauge
triad_raft_applied_index 41
# HELP triad_raft_commit_index Raft commit index known to this member.
# TYPE triad_raft_commit_index gauge
triad_raft_commit_index 42
# HELP triad_raft_state 1 for this member's current Raft state, 0 for the others.
# TYPE triad_raft_state gauge
triad_raft_state{state="candidate"} 0
triad_raft_state{state="follower"} 0
triad_raft_state{state="leader"} 1
triad_raft_state{state="shutdown"} 0
# HELP triad_raft_term Current Raft term.
# TYPE triad_raft_term gauge
triad_raft_term 7
# HELP triad_seats_capacity Seats the valid licenses grant, by feature and version.
# TYPE triad_seats_capacity gauge
triad_seats_capacity{feature="cad",version="1"} 3
triad_seats_capacity{feature="cad",version="2"} 1
# HELP triad_seats_in_use Seats in use by live leases, by feature and licensed version.
# TYPE triad_seats_in_use gauge
triad_seats_in_use{feature="cad",version="1"} 2
triad_seats_in_use{feature="cad",version="2"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	// The next scrape sees the new state: the link to charlie came back,
	// alpha lost leadership, a seat was taken.
	src.links[1].State = membership.LinkUp
	src.raft = raftInfo{State: "follower", Term: 8, Commit: 50, Applied: 50}
	src.usage[0].InUse = 3
	src.leases = 3
	const want2 = `
# HELP triad_cluster_status 2 operational, 1 partially operational, 0 not operational (no leader, no link up, or not formed).
# TYPE triad_cluster_status gauge
triad_cluster_status 2
# HELP triad_link_up 1 when the link from this member to peer is up, 0 when down or unknown.
# TYPE triad_link_up gauge
triad_link_up{peer="bravo"} 1
triad_link_up{peer="charlie"} 1
# HELP triad_raft_state 1 for this member's current Raft state, 0 for the others.
# TYPE triad_raft_state gauge
triad_raft_state{state="candidate"} 0
triad_raft_state{state="follower"} 1
triad_raft_state{state="leader"} 0
triad_raft_state{state="shutdown"} 0
# HELP triad_raft_term Current Raft term.
# TYPE triad_raft_term gauge
triad_raft_term 8
# HELP triad_seats_in_use Seats in use by live leases, by feature and licensed version.
# TYPE triad_seats_in_use gauge
triad_seats_in_use{feature="cad",version="1"} 3
triad_seats_in_use{feature="cad",version="2"} 0
# HELP triad_leases Live leases.
# TYPE triad_leases gauge
triad_leases 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want2),
		"triad_cluster_status", "triad_link_up", "triad_raft_state", "triad_raft_term", "triad_seats_in_use", "triad_leases"); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsCollectorClusterStatus(t *testing.T) {
	cases := []struct {
		name       string
		configured bool
		links      []membership.Link
		noLeader   bool
		want       float64
	}{
		{"unconfigured", false, nil, false, 0},
		{"standalone", true, nil, false, 2},
		{"all links up", true, []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkUp}, {A: "alpha", B: "charlie", State: membership.LinkUp}, {A: "bravo", B: "charlie", State: membership.LinkUp}}, false, 2},
		{"two links up", true, []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkUp}, {A: "alpha", B: "charlie", State: membership.LinkDown}, {A: "bravo", B: "charlie", State: membership.LinkUp}}, false, 2},
		{"one link up", true, []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkUp}, {A: "alpha", B: "charlie", State: membership.LinkDown}, {A: "bravo", B: "charlie", State: membership.LinkDown}}, false, 1},
		{"no link up", true, []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkDown}, {A: "alpha", B: "charlie", State: membership.LinkUnknown}, {A: "bravo", B: "charlie", State: membership.LinkDown}}, false, 0},
		// Never operational without a leader, whatever the links say.
		{"all links up, no leader", true, []membership.Link{
			{A: "alpha", B: "bravo", State: membership.LinkUp}, {A: "alpha", B: "charlie", State: membership.LinkUp}, {A: "bravo", B: "charlie", State: membership.LinkUp}}, true, 0},
		{"standalone, no leader", true, nil, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource()
			src.configured, src.links = tc.configured, tc.links
			if tc.noLeader {
				src.leader = ""
			}
			m := newMetrics(src.source())
			mfs, err := m.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var got *float64
			for _, mf := range mfs {
				switch mf.GetName() {
				case "triad_cluster_status":
					v := mf.GetMetric()[0].GetGauge().GetValue()
					got = &v
				case "triad_link_up", "triad_link_state":
					if len(tc.links) == 0 {
						t.Errorf("%s exported without links", mf.GetName())
					}
				}
			}
			if got == nil || *got != tc.want {
				t.Fatalf("triad_cluster_status = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMetricsHandler(t *testing.T) {
	src := newFakeSource().source()
	src.Format = 7
	m := newMetrics(src)
	m.checkout("cad", fsmpb.Code_OK)
	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE triad_cluster_status gauge\ntriad_cluster_status 1\n",
		`triad_checkouts_total{feature="cad",result="ok"} 1`,
		`triad_seats_in_use{feature="cad",version="1"} 2`,
		"go_goroutines ",
		fmt.Sprintf(`triad_build_info{commit=%q,format="7",goversion=%q,version=%q} 1`, buildinfo.Get().Commit, buildinfo.Get().GoVersion, Version),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q:\n%s", want, body)
		}
	}
}

// TestMetricsQueueLength: triad_queue_length has one series per feature
// with waiters, read at scrape time.
func TestMetricsQueueLength(t *testing.T) {
	src := newFakeSource().source()
	queued := map[string]int{"cad": 2}
	src.Queued = func() map[string]int { return queued }
	c := &metricsCollector{src: src}
	const want = `
# HELP triad_queue_length Queued checkouts waiting for a seat, by feature (features with none are not listed).
# TYPE triad_queue_length gauge
triad_queue_length{feature="cad"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "triad_queue_length"); err != nil {
		t.Fatal(err)
	}
	queued = map[string]int{}
	if err := testutil.CollectAndCompare(c, strings.NewReader(""), "triad_queue_length"); err != nil {
		t.Fatal(err)
	}
}
