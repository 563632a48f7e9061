package membership

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/peerpb"
)

// leaderVar is a leader function the test can change.
type leaderVar struct {
	mu     sync.Mutex
	name   string
	formed bool
}

func (l *leaderVar) set(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.name = name
}

func (l *leaderVar) get() (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.name, l.formed
}

func alarmOf(m *Monitor, kind, member string) (Alarm, bool) {
	for _, a := range m.Alarms() {
		if a.Kind == kind && a.Member == member {
			return a, true
		}
	}
	return Alarm{}, false
}

func eventOf(events []Event, kind, member string) (Event, bool) {
	for _, e := range events {
		if e.Kind == kind && e.Member == member {
			return e, true
		}
	}
	return Event{}, false
}

// One peer dies: the survivor raises member_down naming it, since the time
// it was last heard, with member_down and link_down events naming it; no
// quorum or leader alarm while the other peer and a leader remain. When
// the peer answers again the alarm clears and member_up / link_up events
// (the latter saying how long it was down) follow.
func TestMemberDownAlarmAndEvents(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	lv := &leaderVar{name: "B", formed: true}
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetLeaderFunc(lv.get)
	var log, second eventLog
	m.OnEvent(log.add)
	m.OnEvent(second.add) // every subscriber gets every event
	m.SetPeers(peersBC)
	startMonitor(t, m)
	eventually(t, "all links up", linksAre(m, map[string]string{"A-B": LinkUp, "A-C": LinkUp, "B-C": LinkUp}))
	if a := m.Alarms(); len(a) != 0 {
		t.Fatalf("alarms with every member up and a leader: %+v", a)
	}

	// C dies: B says so too.
	killed := time.Now()
	net.set("c:1", reply{fail: true})
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkDown}})
	eventually(t, "member_down C", func() (bool, string) {
		_, ok := alarmOf(m, AlarmMemberDown, "C")
		return ok, fmt.Sprint(m.Alarms())
	})
	a, _ := alarmOf(m, AlarmMemberDown, "C")
	if a.Since.After(killed) || killed.Sub(a.Since) > testFailAfter {
		t.Errorf("member_down since %s, want the last time C was heard (just before %s)", a.Since, killed)
	}
	for _, kind := range []string{AlarmQuorumLost, AlarmNoLeader, AlarmLinkDown} {
		for _, x := range m.Alarms() {
			if x.Kind == kind {
				t.Errorf("unexpected %s alarm with one member down: %+v", kind, x)
			}
		}
	}
	links := m.Links()
	for _, l := range links {
		if l.String() == "A – C" && (l.State != LinkDown || !l.DownSince.Equal(a.Since)) {
			t.Errorf("link A – C = %+v, want down since %s", l, a.Since)
		}
	}
	if got := StatusWithLeader(links, "B"); got != StatusPartiallyOperational {
		t.Errorf("status with one member down = %q, want %q", got, StatusPartiallyOperational)
	}
	eventually(t, "member_down and link_down events for C", func() (bool, string) {
		_, ok1 := eventOf(m.Events(), EventMemberDown, "C")
		_, ok2 := eventOf(m.Events(), EventLinkDown, "C")
		return ok1 && ok2, fmt.Sprint(m.Events())
	})

	// C is back.
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	eventually(t, "member_up and link_up for C", func() (bool, string) {
		_, ok1 := eventOf(m.Events(), EventMemberUp, "C")
		_, ok2 := eventOf(m.Events(), EventLinkUp, "C")
		return ok1 && ok2, fmt.Sprint(m.Events())
	})
	if _, ok := alarmOf(m, AlarmMemberDown, "C"); ok {
		t.Errorf("member_down C still raised after C answered: %+v", m.Alarms())
	}
	up, _ := eventOf(m.Events(), EventLinkUp, "C")
	if want := "down since " + clockTime(a.Since); !strings.Contains(up.Message, want) {
		t.Errorf("link_up message %q does not say %q", up.Message, want)
	}
	// Down comes before up, once each. member_up may come before this
	// member's own link_up: C counts as up as soon as B hears it again,
	// whichever answer the monitor gets first.
	first := log.kinds(EventLinkDown, EventMemberDown, EventLinkUp, EventMemberUp)
	downs := fmt.Sprint(first[:min(2, len(first))])
	if len(first) != 4 || downs != fmt.Sprint([]string{EventLinkDown, EventMemberDown}) {
		t.Errorf("subscriber 0 got %v, want link_down, member_down, then link_up and member_up in either order", first)
	} else if ups := first[2:]; !(ups[0] == EventLinkUp && ups[1] == EventMemberUp || ups[0] == EventMemberUp && ups[1] == EventLinkUp) {
		t.Errorf("subscriber 0 got %v, want link_up and member_up after the downs", first)
	}
	if got := second.kinds(EventLinkDown, EventMemberDown, EventLinkUp, EventMemberUp); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Errorf("subscriber 1 got %v, subscriber 0 got %v: every subscriber must get the same events in the same order", got, first)
	}
}

// A link cut while both its ends are up is a link_down alarm, not a
// member_down one: the far member is still reached through the third.
func TestLinkDownIsNotMemberDown(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)
	eventually(t, "all up", linksAre(m, map[string]string{"A-B": LinkUp, "A-C": LinkUp, "B-C": LinkUp}))
	// A can no longer reach C, but B still does.
	net.set("c:1", reply{fail: true})
	eventually(t, "A–C down", linksAre(m, map[string]string{"A-B": LinkUp, "A-C": LinkDown, "B-C": LinkUp}))
	a, ok := alarmOf(m, AlarmLinkDown, "C")
	if !ok || a.Subject != "A – C" {
		t.Fatalf("alarms %+v, want link_down for A – C", m.Alarms())
	}
	if _, ok := alarmOf(m, AlarmMemberDown, "C"); ok {
		t.Errorf("member_down C raised although B reaches C: %+v", m.Alarms())
	}

	// A reaches both, but they say B–C is cut: a link_down alarm for B – C.
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkDown}})
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkDown}})
	eventually(t, "link_down B – C", func() (bool, string) {
		for _, a := range m.Alarms() {
			if a.Kind == AlarmLinkDown && a.Subject == "B – C" {
				return true, ""
			}
		}
		return false, fmt.Sprint(m.Alarms())
	})
}

// Both peers die: quorum_lost (and, once the leader function says so,
// no_leader) with their events; both clear when a peer and a leader are
// back, with quorum_regained and leader_changed events.
func TestQuorumLostAndNoLeader(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	lv := &leaderVar{name: "B", formed: true}
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetLeaderFunc(lv.get)
	m.SetPeers(peersBC)
	startMonitor(t, m)
	eventually(t, "leader B known", func() (bool, string) {
		_, ok := eventOf(m.Events(), EventLeaderChanged, "B")
		return ok, fmt.Sprint(m.Events())
	})

	net.set("b:1", reply{fail: true})
	net.set("c:1", reply{fail: true})
	eventually(t, "quorum_lost", func() (bool, string) {
		_, ok := alarmOf(m, AlarmQuorumLost, "A")
		_, b := alarmOf(m, AlarmMemberDown, "B")
		_, c := alarmOf(m, AlarmMemberDown, "C")
		return ok && b && c, fmt.Sprint(m.Alarms())
	})
	if got := Status(m.Links()); got != StatusNotOperational {
		t.Errorf("links' status with both peers down = %q", got)
	}
	// Raft still names the old leader for a moment: no no_leader alarm,
	// but never operational either.
	if _, ok := alarmOf(m, AlarmNoLeader, "A"); ok {
		t.Errorf("no_leader raised while the leader function names B")
	}
	lv.set("")
	if _, ok := alarmOf(m, AlarmNoLeader, "A"); !ok {
		t.Fatalf("no no_leader alarm right after the leader function says none: %+v", m.Alarms())
	}
	if got := StatusWithLeader(m.Links(), ""); got != StatusNotOperational {
		t.Errorf("status without leader = %q", got)
	}
	eventually(t, "no_leader and quorum_lost events", func() (bool, string) {
		_, ok1 := eventOf(m.Events(), EventNoLeader, "B")
		_, ok2 := eventOf(m.Events(), EventQuorumLost, "A")
		return ok1 && ok2, fmt.Sprint(m.Events())
	})
	first, _ := alarmOf(m, AlarmNoLeader, "A")
	pingsPass(t, net, 3)
	if again, _ := alarmOf(m, AlarmNoLeader, "A"); !again.Since.Equal(first.Since) {
		t.Errorf("no_leader since moved from %s to %s", first.Since, again.Since)
	}

	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkDown}})
	lv.set("C")
	eventually(t, "quorum regained, leader C", func() (bool, string) {
		_, ok1 := eventOf(m.Events(), EventQuorumRegained, "A")
		_, ok2 := eventOf(m.Events(), EventLeaderChanged, "C")
		return ok1 && ok2, fmt.Sprint(m.Events())
	})
	for _, kind := range []string{AlarmQuorumLost, AlarmNoLeader} {
		if _, ok := alarmOf(m, kind, "A"); ok {
			t.Errorf("%s still raised: %+v", kind, m.Alarms())
		}
	}
	if _, ok := alarmOf(m, AlarmMemberDown, "B"); !ok {
		t.Errorf("member_down B cleared although B still does not answer: %+v", m.Alarms())
	}
}

// An unformed member (leader function says not formed) has no leader alarm.
func TestNoLeaderAlarmOnlyWhenFormed(t *testing.T) {
	lv := &leaderVar{}
	m := NewMonitor("A", testInterval, testFailAfter, newFakeNet().ping, nil)
	m.SetLeaderFunc(lv.get)
	if a := m.Alarms(); len(a) != 0 {
		t.Errorf("unformed member alarms: %+v", a)
	}
	lv.mu.Lock()
	lv.formed = true
	lv.mu.Unlock()
	if _, ok := alarmOf(m, AlarmNoLeader, "A"); !ok {
		t.Errorf("formed member without leader: alarms %+v, want no_leader", m.Alarms())
	}
}

// Each member's HTTP base URL travels in pings and answers both ways.
func TestHTTPURLsExchanged(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", url: "http://b:4080"})
	net.set("c:1", reply{fail: true})
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetHTTPURL("https://:4080")
	m.SetPeers(peersBC)
	startMonitor(t, m)
	eventually(t, "B's URL", func() (bool, string) {
		u := m.PeerHTTPURLs()
		return u["B"] == "http://b:4080", fmt.Sprint(u)
	})
	if got := net.last("b:1").GetHttpUrl(); got != "https://:4080" {
		t.Errorf("ping carries http_url %q, want https://:4080", got)
	}
	resp := m.HandlePing(&peerpb.PingRequest{From: "C", NowMs: time.Now().UnixMilli(), HttpUrl: "http://c:4080"})
	if resp.GetHttpUrl() != "https://:4080" {
		t.Errorf("ping answer carries http_url %q", resp.GetHttpUrl())
	}
	if u := m.PeerHTTPURLs(); u["C"] != "http://c:4080" {
		t.Errorf("URLs %v, want C's from its ping", u)
	}
	// A peer that stops answering keeps its last URL (the dashboard tries it).
	net.set("b:1", reply{fail: true})
	eventually(t, "B down", func() (bool, string) { return m.PeerState("B") == LinkDown, m.PeerState("B") })
	if u := m.PeerHTTPURLs(); u["B"] != "http://b:4080" {
		t.Errorf("URLs %v after B went down, want B's kept", u)
	}
}

func TestStatusWithLeader(t *testing.T) {
	up := []Link{{A: "a", B: "b", State: LinkUp}, {A: "a", B: "c", State: LinkUp}, {A: "b", B: "c", State: LinkUp}}
	one := []Link{{A: "a", B: "b", State: LinkUp}, {A: "a", B: "c", State: LinkDown}, {A: "b", B: "c", State: LinkDown}}
	for _, tc := range []struct {
		links  []Link
		leader string
		want   string
	}{
		{up, "a", StatusOperational},
		{up, "", StatusNotOperational},
		{one, "a", StatusPartiallyOperational},
		{one, "", StatusNotOperational},
		{nil, "a", StatusOperational},
		{nil, "", StatusNotOperational},
	} {
		if got := StatusWithLeader(tc.links, tc.leader); got != tc.want {
			t.Errorf("StatusWithLeader(%v, %q) = %q, want %q", tc.links, tc.leader, got, tc.want)
		}
	}
}

// A link goes down failAfter after the peer was last heard, whatever the
// ping cadence: its events follow within a tenth of the interval, not at
// the next ping round (here 10 s away, past the test's deadline).
func TestEventsBetweenPings(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{fail: true})
	net.set("c:1", reply{fail: true})
	m := NewMonitor("A", 10*time.Second, 2*time.Second, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)
	m.HandlePing(&peerpb.PingRequest{From: "B", NowMs: time.Now().UnixMilli()})
	eventually(t, "link_down B between pings", func() (bool, string) {
		_, ok := eventOf(m.Events(), EventLinkDown, "B")
		return ok, fmt.Sprint(m.Events())
	})
	m.HandlePing(&peerpb.PingRequest{From: "B", NowMs: time.Now().UnixMilli()})
	eventually(t, "link_up B between pings", func() (bool, string) {
		_, ok := eventOf(m.Events(), EventLinkUp, "B")
		return ok, fmt.Sprint(m.Events())
	})
}
