package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// historyGet is GET /v1/history/<kind>?params on m: status and body.
func historyGet(m *member, kind string, params url.Values) (int, []byte, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + m.httpAddr + "/v1/history/" + kind + "?" + params.Encode())
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type histReports struct {
	Usage struct {
		Points []struct {
			Peak      uint32            `json:"peak"`
			Capacity  uint32            `json:"capacity"`
			Denials   map[string]uint64 `json:"denials"`
			Collected bool              `json:"collected"`
		} `json:"points"`
	}
	Users struct {
		Rows []struct {
			Name  string  `json:"name"`
			Hours float64 `json:"hours"`
		} `json:"rows"`
	}
	Groups struct {
		Rows []struct {
			Name  string  `json:"name"`
			Hours float64 `json:"hours"`
		} `json:"rows"`
	}
	Util struct {
		Capacity uint32 `json:"capacity"`
		Buckets  []struct {
			Seats uint32  `json:"seats"`
			Share float64 `json:"share"`
			Ms    int64   `json:"ms"`
		} `json:"buckets"`
	}
	Compliance struct {
		Features []struct {
			Feature        string `json:"feature"`
			Entitlement    uint32 `json:"entitlement"`
			Peak           uint32 `json:"peak"`
			OverCapacityMs int64  `json:"over_capacity_ms"`
			Level          int    `json:"level"`
			LevelName      string `json:"level_name"`
		} `json:"features"`
	}
}

// Usage history on real processes: known checkouts, releases and denials
// across a leader kill give exactly the expected peaks, denials and user
// hours in every report, on every member (HTTP and the Admin API), and the
// killed member, restarted, holds the same history.
func TestUsageHistoryReports(t *testing.T) {
	c := formedWithLicense(t, 2)
	from := time.Now().Add(-time.Minute).UnixMilli()
	waitFor(t, 20*time.Second, "the usage history started", func() error {
		code, body, err := historyGet(c.members[0], "compliance", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
	if _, err := ctlOn(t, c.servers(), "rules", "set", c.writeFile("rules.txt", "GROUP design alice bob\nEXCLUDE cad USER eve AS no-eve\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	take := func(m *member, req, user string) (*triadv1.CheckoutResponse, time.Time, error) {
		before := time.Now()
		r, err := licensing(t, m.addr).Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: req,
			Feature: "cad", Version: 1, User: user, Host: "h-" + user, ClientId: rawClientID, TtlSeconds: 3600})
		return r, before, err
	}
	release := func(m *member, r *triadv1.CheckoutResponse) (time.Time, time.Time) {
		before := time.Now()
		res, err := licensing(t, m.addr).Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion,
			LeaseIds: []uint64{r.Lease.LeaseId}, LeaseSecrets: [][]byte{r.LeaseSecret}})
		if err != nil || len(res.GetResults()) != 1 || !res.Results[0].Released {
			t.Fatalf("release %d: %v %v", r.Lease.LeaseId, res, err)
		}
		return before, time.Now()
	}
	leader := c.leader(c.members[0])
	var other *member
	for _, m := range c.members {
		if m != leader {
			other = m
			break
		}
	}
	alice, _, err := take(other, "alice-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := take(leader, "bob-1", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := take(other, "carol-1", "carol"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("carol, third seat of two: %v", err)
	}
	if _, _, err := take(other, "eve-1", "eve"); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("eve, excluded: %v", err)
	}
	aliceRelLo, aliceRelHi := release(other, alice)
	leader.kill()
	newLeader := c.newLeader(other, leader)
	bobRelLo, bobRelHi := release(newLeader, bob)
	dave, _, err := take(newLeader, "dave-1", "dave")
	if err != nil {
		t.Fatalf("dave after the failover: %v", err)
	}
	daveRelLo, daveRelHi := release(newLeader, dave)
	to := time.Now().Add(time.Minute).UnixMilli()
	leader.start()

	p := url.Values{"feature": {"cad"}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
	kinds := []struct {
		name, kind string
		extra      url.Values
	}{
		{"usage", "usage", url.Values{"step": {"minute"}}},
		{"users", "users", url.Values{"by": {"user"}}},
		{"groups", "users", url.Values{"by": {"group"}}},
		{"util", "utilization", nil},
		{"compliance", "compliance", nil},
	}
	// Every member, the restarted one included, gives the same answers.
	bodies := map[string]string{}
	waitFor(t, 30*time.Second, "identical reports on every member", func() error {
		for _, k := range kinds {
			q := url.Values{}
			for key, v := range p {
				q[key] = v
			}
			for key, v := range k.extra {
				q[key] = v
			}
			var first string
			for i, m := range c.members {
				code, body, err := historyGet(m, k.kind, q)
				if err != nil || code != http.StatusOK {
					return fmt.Errorf("%s on %s: %d %s %v", k.name, m.name, code, body, err)
				}
				if i == 0 {
					first = string(body)
				} else if string(body) != first {
					return fmt.Errorf("%s differs between %s and %s:\n%s\n%s", k.name, c.members[0].name, m.name, first, body)
				}
			}
			bodies[k.name] = first
		}
		return nil
	})
	var r histReports
	for name, dst := range map[string]any{"usage": &r.Usage, "users": &r.Users, "groups": &r.Groups, "util": &r.Util, "compliance": &r.Compliance} {
		if err := json.Unmarshal([]byte(bodies[name]), dst); err != nil {
			t.Fatalf("%s: %v: %s", name, err, bodies[name])
		}
	}
	var peak uint32
	denials := map[string]uint64{}
	for _, pt := range r.Usage.Points {
		peak = max(peak, pt.Peak)
		for k, v := range pt.Denials {
			denials[k] += v
		}
	}
	if peak != 2 || denials["no_seat"] != 1 || denials["rule"] != 1 || len(denials) != 2 {
		t.Errorf("usage: peak %d, denials %v; want 2, no_seat 1 and rule 1", peak, denials)
	}
	// Seat hours: from the grant (leader time, returned) to the release
	// (committed between the call and its answer; same clock here).
	bounds := map[string][2]float64{}
	span := func(granted int64, lo, hi time.Time) [2]float64 {
		return [2]float64{float64(lo.UnixMilli()-granted-50) / 3.6e6, float64(hi.UnixMilli()-granted+50) / 3.6e6}
	}
	bounds["alice"] = span(alice.Lease.GrantedUnixMs, aliceRelLo, aliceRelHi)
	bounds["bob"] = span(bob.Lease.GrantedUnixMs, bobRelLo, bobRelHi)
	bounds["dave"] = span(dave.Lease.GrantedUnixMs, daveRelLo, daveRelHi)
	hours := map[string]float64{}
	for _, row := range r.Users.Rows {
		hours[row.Name] = row.Hours
	}
	if len(hours) != 3 {
		t.Errorf("users report %+v, want alice, bob and dave", r.Users.Rows)
	}
	for name, b := range bounds {
		if h := hours[name]; h < b[0] || h > b[1] {
			t.Errorf("%s: %.6f seat-hours, want within [%.6f, %.6f]", name, h, b[0], b[1])
		}
	}
	if len(r.Groups.Rows) != 1 || r.Groups.Rows[0].Name != "design" || fmt.Sprintf("%.9f", r.Groups.Rows[0].Hours) != fmt.Sprintf("%.9f", hours["alice"]+hours["bob"]) {
		t.Errorf("groups report %+v, want design = alice + bob", r.Groups.Rows)
	}
	if len(r.Util.Buckets) != 3 || r.Util.Capacity != 2 || r.Util.Buckets[2].Ms <= 0 {
		t.Errorf("utilization %+v, want seats 0..2 with time at 2", r.Util)
	}
	var share float64
	for _, b := range r.Util.Buckets {
		share += b.Share
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("utilization shares sum to %f", share)
	}
	if len(r.Compliance.Features) != 1 || r.Compliance.Features[0].Peak != 2 || r.Compliance.Features[0].Entitlement != 2 ||
		r.Compliance.Features[0].Level != 2 || r.Compliance.Features[0].OverCapacityMs != 0 {
		t.Errorf("compliance %+v, want cad: 2 of 2, level 2 (notice)", r.Compliance.Features)
	}

	// The Admin API on each member: the same numbers, and usage denials
	// cluster-wide.
	for _, m := range c.members {
		var users struct {
			Rows []struct {
				Name  string
				Hours float64
			}
		}
		ctlJSON(t, m.addr, &users, "report", "users", "--feature", "cad", "--from", fmt.Sprint(from), "--to", fmt.Sprint(to))
		if len(users.Rows) != 3 || users.Rows[0].Hours != r.Users.Rows[0].Hours || users.Rows[0].Name != r.Users.Rows[0].Name {
			t.Errorf("report users on %s: %+v, want %+v", m.name, users.Rows, r.Users.Rows)
		}
		out, err := ctlOn(t, m.addr, "-o", "csv", "report", "compliance", "--from", fmt.Sprint(from), "--to", fmt.Sprint(to))
		if err != nil || !strings.Contains(out, "FEATURE,ENTITLEMENT,PEAK") || !strings.Contains(out, "cad,2,2,100.0,0,2,notice") {
			t.Errorf("report compliance -o csv on %s: %v %q", m.name, err, out)
		}
		var den struct {
			Denials []struct {
				Feature, Reason string
				Count           json.Number // a JSON number (triadctl writes numbers as numbers)
			}
		}
		ctlJSON(t, m.addr, &den, "usage", "denials")
		got := map[string]string{}
		for _, d := range den.Denials {
			got[d.Feature+"/"+d.Reason] = d.Count.String()
		}
		if len(got) != 2 || got["cad/no seat"] != "1" || got["cad/denied by rule no-eve"] != "1" {
			t.Errorf("usage denials on %s: %v", m.name, got)
		}
	}
	if code, body, _ := historyGet(c.members[0], "usage", url.Values{"step": {"week"}}); code != http.StatusBadRequest || !strings.Contains(string(body), `"error":"step`) {
		t.Errorf("bad step: %d %s", code, body)
	}
}
