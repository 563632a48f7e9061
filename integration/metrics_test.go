package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
)

// scrape fetches one member's /metrics text exposition.
func scrape(m *member) (string, error) {
	resp, err := http.Get("http://" + m.httpAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics on %s: %s: %s", m.name, resp.Status, b)
	}
	return string(b), nil
}

// metricValue finds series (name with its labels, as exposed) in an
// exposition; labels appear sorted by name.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// The leader's /metrics shows the seats in use and the capacity, an
// operational cluster, and the checkouts counted where they were served.
func TestMetricsEndpoint(t *testing.T) {
	c := formedWithLicense(t, 3)
	leader := c.leader(c.members[0])

	cl := newClient(t, c.servers())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		if _, err := cl.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1}); err != nil {
			t.Fatalf("checkout %d: %v", i, err)
		}
	}

	want := map[string]float64{
		`triad_seats_in_use{feature="cad",version="1"}`:   2,
		`triad_seats_capacity{feature="cad",version="1"}`: 3,
		`triad_cluster_status`:                            2,
		`triad_raft_state{state="leader"}`:                1,
		`triad_leases`:                                    2,
	}
	gcLow, gcHigh := gcPercentWanted(t)
	waitFor(t, 15*time.Second, "leader metrics", func() error {
		body, err := scrape(leader)
		if err != nil {
			return err
		}
		for series, v := range want {
			if got, ok := metricValue(body, series); !ok || got != v {
				return fmt.Errorf("%s = %v (found %v), want %v", series, got, ok, v)
			}
		}
		if got, ok := metricValue(body, "go_gc_gogc_percent"); !ok || got < gcLow || got > gcHigh {
			return fmt.Errorf("go_gc_gogc_percent = %v (found %v), want %v to %v", got, ok, gcLow, gcHigh)
		}
		for _, peer := range c.members {
			if peer == leader {
				continue
			}
			series := fmt.Sprintf(`triad_link_up{peer=%q}`, peer.name)
			if got, ok := metricValue(body, series); !ok || got != 1 {
				return fmt.Errorf("%s = %v (found %v), want 1", series, got, ok)
			}
		}
		return nil
	})

	// The client may have been served by any member (a follower forwards):
	// the ok checkouts summed over members are at least the two taken.
	var ok float64
	for _, m := range c.members {
		body, err := scrape(m)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "# TYPE triad_request_duration_seconds histogram") {
			t.Errorf("%s exposes no request duration histogram", m.name)
		}
		v, _ := metricValue(body, `triad_checkouts_total{feature="cad",result="ok"}`)
		ok += v
	}
	if ok < 2 {
		t.Fatalf("triad_checkouts_total{feature=\"cad\",result=\"ok\"} summed over members = %v, want at least 2", ok)
	}
}

// gcPercentWanted is the range of collector targets members started from
// this test process run with: exactly GOGC from the environment they
// inherit, else above triadd's base of 50, which a fresh member's small
// heap raises to reach its heap floor (cmd/triadd gc.go), up to 2000.
func gcPercentWanted(t *testing.T) (low, high float64) {
	v := os.Getenv("GOGC")
	if v == "" {
		return 51, 2000
	}
	p, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("GOGC=%q in the test environment is not a number", v)
	}
	return float64(p), float64(p)
}
