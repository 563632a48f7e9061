package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// traceLine is one "usage trace" line of a member's JSON log.
type traceLine struct {
	Msg          string `json:"msg"`
	Member       string `json:"member"`
	Event        string `json:"event"`
	Feature      string `json:"feature"`
	Version      int    `json:"version"`
	User         string `json:"user"`
	Host         string `json:"host"`
	LeaseID      uint64 `json:"lease_id"`
	Count        int    `json:"count"`
	Reason       string `json:"reason"`
	LeaderTime   string `json:"leader_time"`
	LeaderTimeMs int64  `json:"leader_time_ms"`
	Index        uint64 `json:"index"`
}

// traceLines returns m's usage trace lines, each as
// "event feature user reason".
func traceLines(t *testing.T, m *member) ([]string, []traceLine) {
	var short []string
	var full []traceLine
	for _, line := range strings.Split(m.log(), "\n") {
		if !strings.Contains(line, `"msg":"usage trace"`) {
			continue
		}
		var l traceLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%s: trace line is not JSON: %q: %v", m.name, line, err)
		}
		full = append(full, l)
		short = append(short, fmt.Sprintf("%s %s %s %s", l.Event, l.Feature, l.User, l.Reason))
	}
	return short, full
}

// TestUsageTrace: on real members, `trace on --feature cad` makes every
// member log each checkout, denial and release of cad (and nothing of an
// untraced feature) as one JSON line with the leader's time; `trace off`
// stops it; a restricted session cannot switch tracing, through triadctl
// or the raw Admin API.
func TestUsageTrace(t *testing.T) {
	c := formedWithLicense(t, 2)
	year := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	c.enroll(c.issue("sim", "--feature", "sim:1:5", "--valid-until", year))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A restricted session can look but not switch.
	_, err := ctlEnv(t, nil, "--server", c.members[1].addr, "--mode", "restricted", "trace", "on", "--feature", "cad")
	wantFail(t, err, "permission denied", "trace needs full mode")
	tok := mustOpen(t, nil, "--server", c.members[1].addr, "--mode", "restricted")
	ac := adminClient(t, c.members[1].addr)
	for _, req := range []*triadv1.TraceSetRequest{{On: true, Feature: "cad"}, {AllOff: true}, {On: true, Serial: "X"}} {
		req.Header = hdr(tok)
		_, err := ac.TraceSet(ctx, req)
		if st := grpcstatus.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "trace needs full mode") {
			t.Errorf("TraceSet %v in a restricted session: %v %q, want PermissionDenied", req, st.Code(), st.Message())
		}
	}
	shown, err := ac.TraceShow(ctx, &triadv1.TraceShowRequest{Header: hdr(tok)})
	if err != nil || len(shown.GetFeatures())+len(shown.GetSerials()) != 0 {
		t.Fatalf("trace show in a restricted session: %v %v, want nothing traced", shown, err)
	}
	ctlEnv(t, nil, "--server", c.members[1].addr, "--session", tok, "disconnect")

	// Bad input is refused with what to do.
	_, err = ctlOn(t, c.servers(), "trace", "on")
	wantFail(t, err, "trace on --feature F")
	_, err = ctlOn(t, c.servers(), "trace", "on", "--license", "NO-SUCH")
	wantFail(t, err, "no license NO-SUCH is enrolled")

	out, err := ctlOn(t, c.servers(), "trace", "on", "--feature", "cad")
	if err != nil || !strings.Contains(out, "tracing feature cad") {
		t.Fatalf("trace on: %q %v", out, err)
	}

	lc := licensing(t, c.members[0].addr)
	// Leases live 10 minutes (no expiry during the test) except bob's,
	// which lives 1 s and is not renewed: it expires.
	coTTL := func(req, feature, user string, ttl uint32) (*triadv1.CheckoutResponse, error) {
		return lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: req, Feature: feature,
			Version: 1, User: user, Host: "h-" + user, ClientId: rawClientID, TtlSeconds: ttl})
	}
	co := func(req, feature, user string) (*triadv1.CheckoutResponse, error) {
		return coTTL(req, feature, user, 600)
	}
	a, err := co("t-1", "cad", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coTTL("t-2", "cad", "bob", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := co("t-3", "cad", "carol"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third cad seat of two: %v, want a denial", err)
	}
	if _, err := co("t-4", "sim", "alice"); err != nil { // not traced
		t.Fatal(err)
	}
	if _, err := lc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion,
		LeaseIds: []uint64{a.Lease.LeaseId}, LeaseSecrets: [][]byte{a.LeaseSecret}}); err != nil {
		t.Fatal(err)
	}
	// In log order, but bob's expiry may come anywhere after the denial:
	// inOrder moves it to the end of what was logged before the trace
	// was switched off.
	const expiry = "expiry cad bob expired"
	want := []string{"checkout cad alice ", "checkout cad bob ", "denial cad carol no_seat", "release cad alice released", expiry}
	inOrder := func(got []string) string {
		var rest []string
		at := -1
		for i, l := range got {
			if l == expiry && at < 0 {
				at = i
				continue
			}
			rest = append(rest, l)
		}
		if at >= 0 && at < 3 {
			return fmt.Sprintf("bob's lease expired before carol's denial: %q", got)
		}
		if at >= 0 {
			rest = slices.Insert(rest, min(len(rest), 4), expiry)
		}
		return strings.Join(rest, "|")
	}
	for _, m := range c.members {
		waitFor(t, 20*time.Second, m.name+" logs the cad trace", func() error {
			got, _ := traceLines(t, m)
			if inOrder(got) != strings.Join(want, "|") {
				return fmt.Errorf("trace lines %q, want %q", got, want)
			}
			return nil
		})
		_, lines := traceLines(t, m)
		for _, l := range lines {
			if l.Member != m.name || l.Version != 1 || l.Count != 1 || l.Host != "h-"+l.User || l.Index == 0 || l.Reason == "" && l.Event != "checkout" {
				t.Errorf("%s: trace line %+v lacks its fields", m.name, l)
			}
			at, err := time.Parse(time.RFC3339, l.LeaderTime)
			if now := time.Now(); err != nil || at.UnixMilli() != l.LeaderTimeMs || at.After(now) || now.Sub(at) > time.Minute {
				t.Errorf("%s: leader_time %q (%d ms) is not the leader's time of the event: %v", m.name, l.LeaderTime, l.LeaderTimeMs, err)
			}
			if (l.Event == "denial") != (l.LeaseID == 0) {
				t.Errorf("%s: %s with lease id %d", m.name, l.Event, l.LeaseID)
			}
		}
	}
	// Every member logged the same events of the same entries.
	_, first := traceLines(t, c.members[0])
	for _, m := range c.members[1:] {
		_, lines := traceLines(t, m)
		for i := range lines {
			lines[i].Member = first[i].Member
		}
		if fmt.Sprint(lines) != fmt.Sprint(first) {
			t.Errorf("%s traced %v, %s traced %v", m.name, lines, c.members[0].name, first)
		}
	}

	// Off: cad is no longer traced. Then sim is: its line proves the
	// later cad checkout was applied, untraced.
	if out, err := ctlOn(t, c.servers(), "trace", "off", "--feature", "cad"); err != nil || !strings.Contains(out, "stopped tracing feature cad") {
		t.Fatalf("trace off: %q %v", out, err)
	}
	if _, err := co("t-5", "cad", "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlOn(t, c.servers(), "trace", "on", "--license", serialGranting(t, c.members[0].addr, "sim")); err != nil {
		t.Fatal(err)
	}
	if _, err := co("t-6", "sim", "erin"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "checkout sim erin ")
	for _, m := range c.members {
		waitFor(t, 20*time.Second, m.name+" logs the sim trace and not dave's cad", func() error {
			got, _ := traceLines(t, m)
			if inOrder(got) != strings.Join(want, "|") {
				return fmt.Errorf("trace lines %q, want %q", got, want)
			}
			return nil
		})
	}
	out, err = ctlOn(t, c.servers(), "trace", "show")
	if err != nil || !strings.Contains(out, "traced licenses: ") || strings.Contains(out, "traced features") {
		t.Errorf("trace show: %q %v, want one traced license", out, err)
	}
	var js struct{ Serials []string }
	ctlJSON(t, c.servers(), &js, "trace", "off")
	if len(js.Serials) != 0 {
		t.Errorf("trace off (everything) left %v", js.Serials)
	}

	// The Grafana dashboard queries only metrics a member exports, and
	// every member counted the one denial of the log.
	t.Run("grafana", func(t *testing.T) {
		exprs := grafanaExprs(t, "../deploy/grafana/triad-dashboard.json")
		for _, m := range c.members {
			text, err := scrape(m)
			if err != nil {
				t.Fatal(err)
			}
			// Request counters exist on the member that served the
			// checkouts; the replicated figures on every member.
			for _, e := range exprs {
				if m != c.members[0] {
					break
				}
				for _, name := range regexp.MustCompile(`\b(?:triad|go|process)_[a-z0-9_]+\b`).FindAllString(e, -1) {
					if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(text) {
						t.Errorf("%s: the dashboard queries %s, absent from /metrics", m.name, name)
					}
				}
			}
			for _, want := range []string{`triad_feature_denials_total{feature="cad",reason="no_seat"} 1`,
				`triad_feature_capacity{feature="cad"} 2`, `triad_feature_capacity{feature="sim"} 5`,
				`triad_feature_seats_in_use{feature="cad"} 1`, `triad_feature_seats_in_use{feature="sim"} 2`} {
				if !strings.Contains(text, want+"\n") {
					t.Errorf("%s: /metrics lacks %s", m.name, want)
				}
			}
		}
	})
}

// grafanaExprs returns the PromQL of the Grafana dashboard's panels and
// query variables (server/grafana_test.go checks its structure).
func grafanaExprs(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
			out = append(out, q.Query)
		}
	}
	if len(out) < 10 {
		t.Fatalf("%s: only %d queries", path, len(out))
	}
	return out
}
