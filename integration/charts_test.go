package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// TestDashboardCharts loads the dashboard in headless Chromium on real
// members after known checkouts and a denial, and checks the charts drew
// the history the members serve over /v1/history (docs/reports.md): cad's
// capacity 2 reached, one denial marked, the utilization histogram, alice
// and bob as top users. The fail-over of the charts between members is
// server.TestDashboardChartsFailOver (fake members, the same page).
func TestDashboardCharts(t *testing.T) {
	browser := findBrowser(t)
	c := formedWithLicense(t, 2)
	m := c.members[1]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lc := licensing(t, c.members[0].addr)
	co := func(req, user string) error {
		_, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: req, Feature: "cad",
			Version: 1, User: user, Host: "h-" + user, ClientId: rawClientID, TtlSeconds: 600})
		return err
	}
	// The history starts once the leader has committed its start: wait
	// for the endpoint to answer before the known checkouts.
	var hist struct {
		Points []struct {
			Peak     float64            `json:"peak"`
			Capacity float64            `json:"capacity"`
			Denials  map[string]float64 `json:"denials"`
		} `json:"points"`
	}
	get := func(path string, v any) error {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m.httpAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	usagePath := func() string {
		now := time.Now().UnixMilli()
		return fmt.Sprintf("/v1/history/usage?feature=cad&step=minute&from=%d&to=%d", now-3600e3, now+60e3)
	}
	waitFor(t, 30*time.Second, "the usage history to start", func() error { return get(usagePath(), &hist) })
	for _, u := range []string{"alice", "bob"} {
		if err := co("c-"+u, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := co("c-carol", "carol"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third seat of two: %v, want a denial", err)
	}
	waitFor(t, 20*time.Second, "the history to show the peak and the denial", func() error {
		if err := get(usagePath(), &hist); err != nil {
			return err
		}
		peak, denials := 0.0, 0.0
		for _, p := range hist.Points {
			peak = max(peak, p.Peak)
			for _, n := range p.Denials {
				denials += n
			}
		}
		if peak != 2 || denials != 1 {
			return fmt.Errorf("peak %v, denials %v", peak, denials)
		}
		return nil
	})

	base := "http://" + m.httpAddr + "/#feature=cad&range=hour"
	var page string
	waitFor(t, 40*time.Second, "the charts drawn with the known history", func() error {
		page = dumpDOM(t, browser, base)
		u := chartAttrs(page, `id="usage-chart"`)
		want := map[string]string{"data-feature": "cad", "data-range": "hour", "data-step": "minute", "data-peak": "2",
			"data-capacity": "2", "data-denials": "1"}
		for k, v := range want {
			if u[k] != v {
				return fmt.Errorf("usage chart %s=%q, want %q (%v)", k, u[k], v, u)
			}
		}
		if n := len(tagsWith(page, "data-denials")) - 1; n != 1 { // the svg itself carries data-denials too
			return fmt.Errorf("%d denial marks, want 1", n)
		}
		return nil
	})
	bars := tagsWith(page, "data-seats")
	if len(bars) < 3 {
		t.Errorf("%d utilization bars, want one per seat count 0..2: %v", len(bars), bars)
	}
	total := 0.0
	for i, b := range bars {
		if b["data-seats"] != strconv.Itoa(i) {
			t.Errorf("bar %d is for %s seats", i, b["data-seats"])
		}
		s, _ := strconv.ParseFloat(b["data-share"], 64)
		total += s
	}
	if total < 0.99 || total > 1.01 {
		t.Errorf("utilization shares add up to %v, want 1", total)
	}
	var names []string
	for _, r := range tagsWith(page, "data-hours") {
		if h, _ := strconv.ParseFloat(r["data-hours"], 64); h <= 0 {
			t.Errorf("top user %s with %v hours", r["data-name"], r["data-hours"])
		}
		names = append(names, r["data-name"])
	}
	if strings.Join(names, ",") != "alice,bob" && strings.Join(names, ",") != "bob,alice" {
		t.Errorf("top users %v, want alice and bob (carol was denied)", names)
	}
	screenshot(t, browser, base, "dashboard-charts-real.png")
}

// chartAttrs returns the attributes of the first start tag containing marker.
func chartAttrs(page, marker string) map[string]string {
	for _, tag := range tagRe.FindAllString(page, -1) {
		if strings.Contains(tag, marker) {
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(tag, -1) {
				attrs[a[1]] = a[2]
			}
			return attrs
		}
	}
	return map[string]string{}
}
