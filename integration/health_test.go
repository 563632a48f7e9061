package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// linkState returns the state of link a–b in s.
func (s status) linkState(a, b string) string {
	for _, l := range s.Links {
		if (l.A == a && l.B == b) || (l.A == b && l.B == a) {
			return l.State
		}
	}
	return "missing"
}

// expectLinks waits until member m reports the given status word and
// link states; it checks both triadctl and GET /v1/status.
func (c *cluster) expectLinks(m *member, d time.Duration, word string, links map[[2]string]string) {
	c.t.Helper()
	check := func(s status) error {
		if s.Status != word {
			return fmt.Errorf("%s reports %q, want %q (links %+v)", m.name, s.Status, word, s.Links)
		}
		for ab, want := range links {
			if got := s.linkState(ab[0], ab[1]); got != want {
				return fmt.Errorf("%s reports link %s–%s %s, want %s", m.name, ab[0], ab[1], got, want)
			}
		}
		return nil
	}
	waitFor(c.t, d, m.name+" reports "+word, func() error {
		s, err := c.status(m)
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return err
		}
		hs, err := memberHTTPStatus(m)
		if err != nil {
			return err
		}
		return check(hs)
	})
}

func memberHTTPStatus(m *member) (status, error) {
	var s status
	return s, getStatusJSON(m, &s)
}

// getStatusJSON decodes GET /v1/status of m into v.
func getStatusJSON(m *member, v any) error {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + m.httpAddr + "/v1/status")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func allUp(c *cluster) map[[2]string]string {
	a, b, cc := c.members[0].name, c.members[1].name, c.members[2].name
	return map[[2]string]string{{a, b}: "up", {a, cc}: "up", {b, cc}: "up"}
}

func TestHealthKillOneThenTwo(t *testing.T) {
	c := startCluster(t)
	c.form()
	a, b, cc := c.members[0], c.members[1], c.members[2]
	for _, m := range c.members {
		c.expectLinks(m, 10*time.Second, "operational", allUp(c))
	}
	cc.kill()
	killed := time.Now()
	for _, m := range []*member{a, b} {
		c.expectLinks(m, 6*time.Second-time.Since(killed), "partially operational",
			map[[2]string]string{{a.name, b.name}: "up", {a.name, cc.name}: "down", {b.name, cc.name}: "down"})
	}
	b.kill()
	killed = time.Now()
	c.expectLinks(a, 6*time.Second-time.Since(killed), "not operational",
		map[[2]string]string{{a.name, b.name}: "down", {a.name, cc.name}: "down", {b.name, cc.name}: "unknown"})
}

func TestHealthPauseResume(t *testing.T) {
	c := startCluster(t)
	c.form()
	a, b, cc := c.members[0], c.members[1], c.members[2]
	for _, m := range c.members {
		c.expectLinks(m, 10*time.Second, "operational", allUp(c))
	}
	cc.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	defer cc.cmd.Process.Signal(syscall.SIGCONT)
	down := map[[2]string]string{{a.name, b.name}: "up", {a.name, cc.name}: "down", {b.name, cc.name}: "down"}
	for _, m := range []*member{a, b} {
		c.expectLinks(m, 6*time.Second-time.Since(stopped), "partially operational", down)
	}
	cc.cmd.Process.Signal(syscall.SIGCONT)
	resumed := time.Now()
	for _, m := range []*member{a, b} {
		c.expectLinks(m, 2*time.Second-time.Since(resumed), "operational", allUp(c))
	}
}

// TestHealthCutOff puts every member behind fault-injecting proxies and
// cuts one member off the others' network.
func TestHealthCutOff(t *testing.T) {
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	var grpcProxies, raftProxies []*proxy
	for i, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, ips[i], filepath.Join(dir, "vendor.pub"))
		gp, rp := newProxy(t, ""), newProxy(t, "")
		m.extra = []string{"--raft-advertise", rp.addr(), "--peer-source-ip", ips[i], "--test-isolation-after", "3s"}
		m.start()
		gp.setTarget(m.addr)
		rp.setTarget(m.raftAddr)
		grpcProxies, raftProxies = append(grpcProxies, gp), append(raftProxies, rp)
		c.members = append(c.members, m)
	}
	proxied := grpcProxies[0].addr() + "," + grpcProxies[1].addr() + "," + grpcProxies[2].addr()
	if _, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", proxied); err != nil {
		t.Fatal(err)
	}
	a, b, cc := c.members[0], c.members[1], c.members[2]
	for _, m := range c.members {
		c.expectLinks(m, 10*time.Second, "operational", allUp(c))
	}
	cut := func() {
		for i, p := range append(append([]*proxy{}, grpcProxies...), raftProxies...) {
			if i%3 == 2 { // charlie's own ports: nothing from alpha or bravo
				p.cut(ips[0], ips[1])
			} else { // alpha's and bravo's ports: nothing from charlie
				p.cut(ips[2])
			}
		}
	}
	cut()
	cutAt := time.Now()
	down := map[[2]string]string{{a.name, b.name}: "up", {a.name, cc.name}: "down", {b.name, cc.name}: "down"}
	for _, m := range []*member{a, b} {
		c.expectLinks(m, 6*time.Second-time.Since(cutAt), "partially operational", down)
	}
	// The cut-off member sees itself alone, says so, and reports itself
	// isolated once.
	c.expectLinks(cc, 6*time.Second, "not operational", map[[2]string]string{{a.name, cc.name}: "down", {b.name, cc.name}: "down", {a.name, b.name}: "unknown"})
	waitFor(t, 10*time.Second, "charlie isolated alarm", func() error {
		s, err := httpStatusFull(cc)
		if err != nil {
			return err
		}
		if !s.Isolated || !s.hasAlarm("member_isolated") {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	// Its dashboard says so, in a real browser, and shows the view of a
	// member that still reaches a peer (the browser reaches their status
	// ports; only the member ports are cut).
	t.Run("dashboard says cut off", func(t *testing.T) {
		browser := findBrowser(t)
		url := "http://" + cc.httpAddr + "/"
		page := dumpDOM(t, browser, url)
		if !strings.Contains(page, "charlie reaches neither peer: showing the view of ") || statusWord(page) != "partially operational" {
			t.Fatalf("the cut-off member's dashboard does not say it is cut off and show the others' view (status %q):\n%s", statusWord(page), page)
		}
		if v := regexpFind(`data-view-of="([a-z]+)"`, page); v != a.name && v != b.name {
			t.Errorf("the cut-off member's dashboard shows the view of %q, want alpha or bravo", v)
		}
		screenshot(t, browser, url, "dashboard-cut-off.png")
	})
	// The other two still serve: a leader among them.
	if l := c.leader(a); l == cc {
		t.Fatalf("cut-off member still leads")
	}
	for _, p := range append(grpcProxies, raftProxies...) {
		p.heal()
	}
	for _, m := range c.members {
		c.expectLinks(m, 10*time.Second, "operational", allUp(c))
	}
	s, err := httpStatusFull(cc)
	if err != nil || s.hasAlarm("member_isolated") {
		t.Fatalf("isolation alarm not cleared after heal: %+v %v", s, err)
	}
	if n := strings.Count(cc.log(), `"event":"member_isolated"`); n != 1 {
		t.Fatalf("member isolated logged %d times, want once per isolation", n)
	}
	if !strings.Contains(cc.log(), `"event":"member_reconnected"`) {
		t.Fatalf("no reconnection event in the log")
	}
}

type fullStatus struct {
	Isolated bool `json:"isolated"`
	Alarms   []struct {
		Kind   string `json:"kind"`
		Member string `json:"member"`
	} `json:"alarms"`
	ClockOffsets []struct {
		Peer     string      `json:"peer"`
		OffsetMs json.Number `json:"offset_ms"`
		Skewed   bool        `json:"skewed"`
	} `json:"clock_offsets"`
}

func (s fullStatus) hasAlarm(kind string) bool {
	for _, a := range s.Alarms {
		if a.Kind == kind {
			return true
		}
	}
	return false
}

func httpStatusFull(m *member) (fullStatus, error) {
	var s fullStatus
	return s, getStatusJSON(m, &s)
}

// A member whose clock is off by more than an hour cannot form a cluster,
// and one that drifts after formation raises a clock-skew alarm.
func TestClockSkew(t *testing.T) {
	c := startCluster(t)
	skewed := c.members[2]
	skewed.kill()
	skewed.extra = []string{"--test-clock-offset", "2h"}
	skewed.start()
	_, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", c.servers())
	if err == nil || !strings.Contains(err.Error(), "clock of member") || !strings.Contains(err.Error(), "NTP") {
		t.Fatalf("formation with a skewed clock: %v", err)
	}
	skewed.kill()
	skewed.extra = nil
	skewed.start()
	c.form()
	skewed.kill()
	skewed.extra = []string{"--test-clock-offset", "-90m"}
	skewed.start()
	waitFor(t, 10*time.Second, "clock skew alarm on alpha", func() error {
		s, err := httpStatusFull(c.members[0])
		if err != nil {
			return err
		}
		for _, a := range s.Alarms {
			if a.Kind == "clock_skew" && a.Member == skewed.name {
				return nil
			}
		}
		return fmt.Errorf("alarms %+v offsets %+v", s.Alarms, s.ClockOffsets)
	})
	out, err := ctlOn(t, c.members[0].addr, "cluster", "status")
	if err != nil || !strings.Contains(out, "ALARM clock_skew") {
		t.Fatalf("cluster status does not show the alarm: %v\n%s", err, out)
	}
	skewed.kill()
	skewed.extra = nil
	skewed.start()
	waitFor(t, 10*time.Second, "clock skew alarm cleared", func() error {
		s, err := httpStatusFull(c.members[0])
		if err != nil {
			return err
		}
		if s.hasAlarm("clock_skew") {
			return fmt.Errorf("still %+v", s.Alarms)
		}
		return nil
	})
}
