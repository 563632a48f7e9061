package server

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
)

// grafanaQueries returns every PromQL expression of the Grafana dashboard:
// panel targets and template variable queries.
func grafanaQueries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no uid, title or panels", path)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
			t.Errorf("variable %s has no query: %s", v.Name, v.Query)
		}
		exprs = append(exprs, q.Query)
	}
	return exprs
}

var grafanaMetricRe = regexp.MustCompile(`\b(?:triad|go|process)_[a-z0-9_]+\b`)

// TestGrafanaDashboardMetricsExist: the dashboard under deploy/grafana is
// valid JSON and every metric it queries is one a member exports.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	m := newMetrics(newFakeSource().source())
	tr := newTestTracer(nil)
	m.reg.MustRegister(tr.denials, tr.lines, tr.drops)
	// Counters with labels show only once counted.
	m.checkout("cad", fsmpb.Code_OK)
	m.observe(methodCheckout, time.Now())
	tr.observe([]fsm.LeaseEvent{{Event: fsm.EventDenial, Feature: "cad", Reason: "no_seat", Licensed: true}})
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}
	exprs := grafanaQueries(t, "../deploy/grafana/triad-dashboard.json")
	n := 0
	for _, e := range exprs {
		for _, name := range grafanaMetricRe.FindAllString(e, -1) {
			n++
			base := name
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suf); ok && have[b] {
					base = b
				}
			}
			if !have[base] {
				t.Errorf("the dashboard queries %s (in %q), which no member exports", name, e)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d metric references found in the dashboard", n)
	}
}
