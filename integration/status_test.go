package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// truthStatus is the part of /v1/status these tests read.
type truthStatus struct {
	Status  string `json:"status"`
	Leader  string `json:"leader"`
	Member  string `json:"member"`
	Members []struct {
		Name    string `json:"name"`
		HTTPURL string `json:"http_url"`
	} `json:"members"`
	Links []struct {
		A           string      `json:"a"`
		B           string      `json:"b"`
		State       string      `json:"state"`
		DownSinceMs json.Number `json:"down_since_unix_ms"`
	} `json:"links"`
	Alarms []struct {
		Kind    string      `json:"kind"`
		Member  string      `json:"member"`
		Message string      `json:"message"`
		SinceMs json.Number `json:"since_unix_ms"`
	} `json:"alarms"`
	Events []struct {
		Kind    string      `json:"kind"`
		Member  string      `json:"member"`
		Message string      `json:"message"`
		AtMs    json.Number `json:"at_unix_ms"`
	} `json:"events"`
}

func truthOf(m *member) (truthStatus, error) {
	var s truthStatus
	return s, getStatusJSON(m, &s)
}

// alarm returns the alarm kind about member ("" = any member).
func (s truthStatus) alarm(kind, member string) (since time.Time, ok bool) {
	for _, a := range s.Alarms {
		if a.Kind == kind && (member == "" || a.Member == member) {
			var ms int64
			fmt.Sscan(string(a.SinceMs), &ms)
			return time.UnixMilli(ms), true
		}
	}
	return time.Time{}, false
}

func (s truthStatus) event(kind, member, contains string) bool {
	for _, e := range s.Events {
		if e.Kind == kind && e.Member == member && strings.Contains(e.Message, contains) {
			return true
		}
	}
	return false
}

func (s truthStatus) link(a, b string) (state string, downSince time.Time) {
	for _, l := range s.Links {
		if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
			var ms int64
			fmt.Sscan(string(l.DownSinceMs), &ms)
			if ms > 0 {
				downSince = time.UnixMilli(ms)
			}
			return l.State, downSince
		}
	}
	return "missing", time.Time{}
}

// readyz is m's /readyz answer.
func readyz(m *member) (int, string, error) {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + m.httpAddr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// agree checks that triadctl's word and exit status, /v1/status, /readyz
// and the triad_cluster_status metric of m say the same.
func agree(t *testing.T, m *member, word string, code int, ready bool) (truthStatus, error) {
	t.Helper()
	out, got, err := ctlStatus(t, m.addr, "--output", "json", "--timeout", "10s")
	if err != nil {
		return truthStatus{}, err
	}
	var cs truthStatus
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return cs, fmt.Errorf("triadctl JSON %q: %v", out, err)
	}
	if cs.Status != word || got != code {
		return cs, fmt.Errorf("%s: triadctl says %q and exits %d, want %q and %d (alarms %+v)", m.name, cs.Status, got, word, code, cs.Alarms)
	}
	s, err := truthOf(m)
	if err != nil {
		return s, err
	}
	if s.Status != word {
		return s, fmt.Errorf("%s: /v1/status says %q, want %q", m.name, s.Status, word)
	}
	rc, body, err := readyz(m)
	if err != nil {
		return s, err
	}
	wantRC, wantBody := 200, "ready: "+word
	if !ready {
		wantRC, wantBody = 503, "not ready: "+word
	}
	if rc != wantRC || !strings.HasPrefix(body, wantBody) {
		return s, fmt.Errorf("%s: /readyz = %d %q, want %d %q…", m.name, rc, body, wantRC, wantBody)
	}
	// /metrics: triad_cluster_status is 2 - exit status.
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + m.httpAddr + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	mb, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("\ntriad_cluster_status %d\n", 2-code); !strings.Contains(string(mb), want) {
		return s, fmt.Errorf("%s: /metrics lacks %q", m.name, strings.TrimSpace(want))
	}
	return s, nil
}

// TestStatusTellsTheTruth kills one member, then a second, then restarts
// both, and checks at each step that the survivors' status word, alarms,
// links, events, triadctl exit status and /readyz all tell the truth.
func TestStatusTellsTheTruth(t *testing.T) {
	c := startCluster(t)
	c.form()
	a, b, cc := c.members[0], c.members[1], c.members[2]
	for _, m := range c.members {
		c.expectLinks(m, 15*time.Second, "operational", allUp(c))
	}
	for _, m := range c.members {
		waitFor(t, 10*time.Second, m.name+" operational everywhere, no member alarms", func() error {
			s, err := agree(t, m, "operational", 0, true)
			if err != nil {
				return err
			}
			for _, k := range []string{"member_down", "link_down", "quorum_lost", "no_leader"} {
				if _, ok := s.alarm(k, ""); ok {
					return fmt.Errorf("%s alarm with every member up: %+v", k, s.Alarms)
				}
			}
			// Every member's dashboard address is listed, as reached here.
			for _, x := range s.Members {
				if want := "http://" + c.member(x.Name).httpAddr; x.HTTPURL != want {
					return fmt.Errorf("%s lists %s's http_url %q, want %q", m.name, x.Name, x.HTTPURL, want)
				}
			}
			return nil
		})
	}

	// One member killed: the two others name it down within the failure
	// detection time (5 s; generous deadline for a loaded machine).
	cc.kill()
	killed := time.Now()
	for _, m := range []*member{a, b} {
		waitFor(t, 15*time.Second, m.name+" reports "+cc.name+" down", func() error {
			s, err := agree(t, m, "partially operational", 1, true)
			if err != nil {
				return err
			}
			since, ok := s.alarm("member_down", cc.name)
			if !ok {
				return fmt.Errorf("no member_down %s alarm: %+v", cc.name, s.Alarms)
			}
			if since.After(killed) || killed.Sub(since) > 4*time.Second {
				return fmt.Errorf("member_down since %s, want the last time %s was heard (just before %s)", since, cc.name, killed)
			}
			if st, ds := s.link(m.name, cc.name); st != "down" || !ds.Equal(since) {
				return fmt.Errorf("link %s–%s %s down since %s, want down since %s", m.name, cc.name, st, ds, since)
			}
			if !s.event("link_down", cc.name, "") || !s.event("member_down", cc.name, "") {
				return fmt.Errorf("no link_down/member_down events for %s: %+v", cc.name, s.Events)
			}
			for _, k := range []string{"quorum_lost", "no_leader"} {
				if _, ok := s.alarm(k, ""); ok {
					return fmt.Errorf("%s alarm with two members up: %+v", k, s.Alarms)
				}
			}
			return nil
		})
		t.Logf("%s reported %s down %s after the kill", m.name, cc.name, time.Since(killed).Round(100*time.Millisecond))
	}
	// The human-readable status shows the alarm and the events too.
	out, code, err := ctlStatus(t, a.addr, "--timeout", "10s")
	if err != nil || code != 1 || !strings.Contains(out, "ALARM member_down") || !strings.Contains(out, "RECENT EVENTS") {
		t.Fatalf("cluster status (table) exit %d, %v:\n%s", code, err, out)
	}

	// A second member killed: the survivor is not operational, with no
	// leader and no quorum, and never claims operational meanwhile.
	b.kill()
	killed = time.Now()
	waitFor(t, 15*time.Second, a.name+" alone: not operational", func() error {
		s, err := truthOf(a)
		if err != nil {
			return err
		}
		if s.Status == "operational" {
			t.Fatalf("%s says operational %s after losing a second member (leader %q, links %+v)", a.name, time.Since(killed), s.Leader, s.Links)
		}
		if s.Status != "not operational" {
			return fmt.Errorf("status %q", s.Status)
		}
		if s, err = agree(t, a, "not operational", 2, false); err != nil {
			return err
		}
		for _, x := range [][2]string{{"no_leader", a.name}, {"quorum_lost", a.name}, {"member_down", b.name}, {"member_down", cc.name}} {
			if _, ok := s.alarm(x[0], x[1]); !ok {
				return fmt.Errorf("no %s %s alarm: %+v", x[0], x[1], s.Alarms)
			}
		}
		if s.Leader != "" {
			return fmt.Errorf("leader %q named without quorum", s.Leader)
		}
		if !s.event("link_down", b.name, "") || !s.event("quorum_lost", a.name, "") {
			return fmt.Errorf("no link_down %s / quorum_lost events yet: %+v", b.name, s.Events)
		}
		return nil
	})
	t.Logf("%s not operational %s after the second kill", a.name, time.Since(killed).Round(100*time.Millisecond))
	// The survivor's dashboard, in a real browser: no other member answers,
	// so it shows the survivor's own view and says it is cut off.
	t.Run("dashboard of the survivor", func(t *testing.T) {
		browser := findBrowser(t)
		page := dumpDOM(t, browser, "http://"+a.httpAddr+"/")
		if statusWord(page) != "not operational" || !strings.Contains(page, "This member ("+a.name+") reaches neither peer") {
			t.Errorf("survivor's dashboard: status %q, page:\n%s", statusWord(page), page)
		}
		for _, kind := range []string{"member down", "quorum lost", "no leader"} {
			if !strings.Contains(alarmsList(page), ">"+kind+"<") {
				t.Errorf("survivor's dashboard lacks the %s alarm: %s", kind, alarmsList(page))
			}
		}
		if !strings.Contains(page, `data-kind="member_down"`) || !strings.Contains(page, `data-link-state="down"`) || !strings.Contains(page, "down since ") {
			t.Errorf("survivor's dashboard lacks the member_down event or a link down since: %s", page)
		}
	})

	// Both back: operational again, alarms cleared, the events tell the story.
	b.start()
	cc.start()
	for _, m := range c.members {
		waitFor(t, 30*time.Second, m.name+" operational again", func() error {
			s, err := agree(t, m, "operational", 0, true)
			if err != nil {
				return err
			}
			for _, k := range []string{"member_down", "link_down", "quorum_lost", "no_leader"} {
				if _, ok := s.alarm(k, ""); ok {
					return fmt.Errorf("%s alarm still raised: %+v", k, s.Alarms)
				}
			}
			return nil
		})
	}
	s, err := truthOf(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range [][3]string{
		{"link_down", cc.name, ""}, {"member_down", cc.name, ""}, {"link_down", b.name, ""},
		{"quorum_lost", a.name, ""}, {"no_leader", "", ""},
		{"link_up", b.name, "down since"}, {"link_up", cc.name, "down since"},
		{"member_up", b.name, ""}, {"member_up", cc.name, ""}, {"quorum_regained", a.name, ""},
	} {
		found := false
		for _, e := range s.Events {
			found = found || (e.Kind == x[0] && (x[1] == "" || e.Member == x[1]) && strings.Contains(e.Message, x[2]))
		}
		if !found {
			t.Errorf("no %s event for %q (%q) on %s: %+v", x[0], x[1], x[2], a.name, s.Events)
		}
	}
	leaderEvents := 0
	for _, e := range s.Events {
		if e.Kind == "leader_changed" && e.Member != "" {
			leaderEvents++
		}
	}
	if leaderEvents < 2 {
		t.Errorf("%d leader_changed events on %s, want one at formation and one after the restart: %+v", leaderEvents, a.name, s.Events)
	}
	if !strings.Contains(a.log(), `"event":"member_down"`) {
		t.Errorf("member_down event not logged")
	}

	// No member answering: unknown (3).
	for _, m := range c.members {
		m.kill()
	}
	if _, code, err := ctlStatus(t, c.servers(), "--timeout", "5s"); code != 3 || err == nil {
		t.Fatalf("cluster status with every member dead: exit %d (%v), want 3", code, err)
	}
}

// TestDashboardFailover: the dashboard page keeps showing the cluster when
// the member that served it stops answering, by polling the other members
// (whose status endpoints allow its origin by CORS, and only it). The page
// is served through a proxy that goes dead after the page's first status,
// in a real headless Chromium.
func TestDashboardFailover(t *testing.T) {
	browser := findBrowser(t)
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frontURL := "http://" + front.Addr().String()
	c := &cluster{t: t, dir: dir}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		var extra []string
		if n == "alpha" {
			extra = []string{"--http-advertise", frontURL}
		}
		c.members = append(c.members, newMember(t, n, filepath.Join(dir, "vendor.pub"), extra...))
	}
	c.form()
	a, b := c.members[0], c.members[1]

	// alpha's status port behind the front: it serves the page, its assets
	// and one status, then every connection is closed unanswered.
	target, _ := url.Parse("http://" + a.httpAddr)
	rp := httputil.NewSingleHostReverseProxy(target)
	var statuses, dead atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if statuses.Load() >= 1 {
			dead.Add(1)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			http.Error(w, "dead", http.StatusBadGateway)
			return
		}
		if r.URL.Path == "/v1/status" {
			statuses.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(front)
	t.Cleanup(func() { srv.Close() })

	for _, m := range c.members {
		c.expectLinks(m, 15*time.Second, "operational", allUp(c))
	}
	waitFor(t, 10*time.Second, "bravo lists alpha's advertised URL", func() error {
		s, err := truthOf(b)
		if err != nil {
			return err
		}
		for _, x := range s.Members {
			if x.Name == a.name && x.HTTPURL == frontURL {
				return nil
			}
		}
		return fmt.Errorf("members %+v", s.Members)
	})

	// CORS: a member's status endpoints allow the members' origins, not others.
	for _, tc := range []struct {
		origin string
		allow  bool
	}{{frontURL, true}, {"http://" + c.members[2].httpAddr, true}, {"http://evil.example", false}, {"null", false}} {
		for _, path := range []string{"/v1/status", "/readyz", "/healthz"} {
			req, _ := http.NewRequest("GET", "http://"+b.httpAddr+path, nil)
			req.Header.Set("Origin", tc.origin)
			resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Access-Control-Allow-Origin")
			if (tc.allow && got != tc.origin) || (!tc.allow && got != "") || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("GET %s with Origin %s: Access-Control-Allow-Origin %q (allow %v)", path, tc.origin, got, tc.allow)
			}
		}
	}

	page := dumpDOM(t, browser, frontURL+"/")
	if dead.Load() == 0 {
		t.Fatalf("the page never polled again after its first status")
	}
	if !strings.Contains(page, `data-failover="yes"`) {
		t.Fatalf("the page did not fail over to another member; page:\n%s", page)
	}
	viewOf := ""
	if m := regexpFind(`data-view-of="([a-z]+)"`, page); m != "" {
		viewOf = m
	}
	if viewOf != "bravo" && viewOf != "charlie" {
		t.Errorf("page shows the view of %q, want bravo or charlie", viewOf)
	}
	if !strings.Contains(page, "alpha is not answering") || !strings.Contains(page, "showing the view of "+viewOf) {
		t.Errorf("the banner does not say alpha is not answering and whose view is shown:\n%s", page)
	}
	if w := statusWord(page); w != "operational" {
		t.Errorf("status word %q from %s's view, want operational (all three members run)", w, viewOf)
	}
	if n := len(tagsWith(page, "data-member-url")); n != 3 {
		t.Errorf("%d member dashboard links, want 3", n)
	}
	statuses.Store(0) // the front serves one more page load, then dies again
	screenshot(t, browser, frontURL+"/", "dashboard-failover.png")

	// Now really kill alpha: bravo still allows alpha's origin (a page
	// alpha served keeps polling bravo) and reports alpha down.
	a.kill()
	waitFor(t, 15*time.Second, "bravo reports alpha down", func() error {
		s, err := truthOf(b)
		if err != nil {
			return err
		}
		if _, ok := s.alarm("member_down", a.name); !ok {
			return fmt.Errorf("alarms %+v", s.Alarms)
		}
		return nil
	})
	req, _ := http.NewRequest("GET", "http://"+b.httpAddr+"/v1/status", nil)
	req.Header.Set("Origin", frontURL)
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != frontURL {
		t.Errorf("after alpha died, bravo's CORS answer to alpha's origin: %q", got)
	}
}

// regexpFind returns the first submatch of expr in s ("" if none).
func regexpFind(expr, s string) string {
	if m := regexp.MustCompile(expr).FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
