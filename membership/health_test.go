package membership

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// eventLog collects the events a monitor hands to its OnEvent callback.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) kinds(of ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return filterKinds(l.events, of...)
}

func filterKinds(events []Event, of ...string) []string {
	var out []string
	for _, e := range events {
		for _, k := range of {
			if e.Kind == k {
				out = append(out, e.Kind)
			}
		}
	}
	return out
}

func hasAlarm(m *Monitor, kind, member string) bool {
	for _, a := range m.Alarms() {
		if a.Kind == kind && a.Member == member {
			return true
		}
	}
	return false
}

// pingsPass waits until the monitor has pinged b:1 n more times, so that
// that many heartbeat rounds (each followed by an evaluation) have run.
func pingsPass(t *testing.T, net *fakeNet, n int) {
	t.Helper()
	from := net.callCount("b:1")
	eventually(t, fmt.Sprintf("%d more heartbeat rounds", n), func() (bool, string) {
		got := net.callCount("b:1") - from
		return got >= n, fmt.Sprintf("%d rounds", got)
	})
}

// A member that reaches neither peer for the isolation delay raises one
// "member isolated" event per isolation, however long it lasts; reaching a
// peer again ends the isolation (one "member reconnected" event), and the
// next isolation raises its own event. Reaching one peer is not isolation.
func TestIsolationOneEventPerIsolation(t *testing.T) {
	const isolationAfter = 300 * time.Millisecond
	rounds := int(2 * isolationAfter / testInterval) // two isolation delays' worth of heartbeats
	net := newFakeNet()
	up := func(addr, name string) { net.set(addr, reply{name: name}) }
	down := func(addr string) { net.set(addr, reply{fail: true}) }
	up("b:1", "B")
	up("c:1", "C")
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetIsolationAfter(isolationAfter)
	var log, second eventLog // OnEvent adds subscribers (log, notify)
	m.OnEvent(log.add)
	m.OnEvent(second.add)
	m.SetPeers(peersBC)
	startMonitor(t, m)
	eventually(t, "both peers up", func() (bool, string) {
		return peerUp(m, "B") && peerUp(m, "C"), fmt.Sprint(m.Links())
	})

	// One peer down, the other still reached: not isolated.
	down("b:1")
	eventually(t, "link A–B down", func() (bool, string) { return log.count(EventLinkDown) == 1, fmt.Sprint(m.Events()) })
	pingsPass(t, net, rounds)
	if n := log.count(EventMemberIsolated); n != 0 || m.Isolated() || hasAlarm(m, AlarmMemberIsolated, "A") {
		t.Fatalf("with one peer reached: %d isolation events, Isolated() = %v, alarms %v", n, m.Isolated(), m.Alarms())
	}

	// Neither peer: isolated once, however long it lasts.
	down("c:1")
	eventually(t, "member isolated", func() (bool, string) { return log.count(EventMemberIsolated) == 1, fmt.Sprint(m.Events()) })
	if !m.Isolated() || !hasAlarm(m, AlarmMemberIsolated, "A") {
		t.Fatalf("isolated: Isolated() = %v, alarms %v", m.Isolated(), m.Alarms())
	}
	pingsPass(t, net, rounds)
	if n := log.count(EventMemberIsolated); n != 1 {
		t.Fatalf("one isolation lasting %d heartbeat rounds raised %d events, want 1", rounds, n)
	}

	// A peer answers again: the isolation ends.
	up("c:1", "C")
	eventually(t, "member reconnected", func() (bool, string) { return log.count(EventMemberReconnected) == 1, fmt.Sprint(m.Events()) })
	if m.Isolated() || hasAlarm(m, AlarmMemberIsolated, "A") {
		t.Fatalf("reconnected: Isolated() = %v, alarms %v", m.Isolated(), m.Alarms())
	}

	// Isolated again: a second event, and only one.
	down("c:1")
	eventually(t, "member isolated again", func() (bool, string) { return log.count(EventMemberIsolated) == 2, fmt.Sprint(m.Events()) })
	pingsPass(t, net, rounds)
	want := fmt.Sprint([]string{EventMemberIsolated, EventMemberReconnected, EventMemberIsolated})
	if got := fmt.Sprint(log.kinds(EventMemberIsolated, EventMemberReconnected)); got != want {
		t.Fatalf("isolation events handed to OnEvent: %s, want %s", got, want)
	}
	if got := fmt.Sprint(second.kinds(EventMemberIsolated, EventMemberReconnected)); got != want {
		t.Fatalf("isolation events handed to the second subscriber: %s, want %s", got, want)
	}
	if got := fmt.Sprint(filterKinds(m.Events(), EventMemberIsolated, EventMemberReconnected)); got != want {
		t.Fatalf("isolation events in Events(): %s, want %s", got, want)
	}
}

// The isolation delay is five minutes unless set (DESIGN §4, §11): a member
// cut off for just under five minutes is not isolated, at five it is.
func TestIsolationDefaultFiveMinutes(t *testing.T) {
	if DefaultIsolationAfter != 5*time.Minute {
		t.Fatalf("DefaultIsolationAfter = %s, want 5m", DefaultIsolationAfter)
	}
	m := NewMonitor("A", testInterval, testFailAfter, nil, nil)
	if got := m.IsolationAfter(); got != 5*time.Minute {
		t.Fatalf("default isolation delay = %s, want 5m", got)
	}
	var log eventLog
	m.OnEvent(log.add)
	before := time.Now()
	m.SetPeers(peersBC) // no Run: no peer ever answers
	after := time.Now()
	eventually(t, "both links down", func() (bool, string) {
		return m.PeerState("B") == LinkDown && m.PeerState("C") == LinkDown, fmt.Sprint(m.Links())
	})
	m.evaluate(before.Add(5*time.Minute - time.Second))
	if n := log.count(EventMemberIsolated); n != 0 {
		t.Fatalf("isolated after less than five minutes cut off (%d events)", n)
	}
	m.evaluate(after.Add(5 * time.Minute))
	if n := log.count(EventMemberIsolated); n != 1 || !hasAlarm(m, AlarmMemberIsolated, "A") {
		t.Fatalf("after five minutes cut off: %d isolation events, alarms %v; want one event and the alarm", n, m.Alarms())
	}
	m.evaluate(after.Add(time.Hour))
	if n := log.count(EventMemberIsolated); n != 1 {
		t.Fatalf("the same isolation an hour on raised %d events, want 1", n)
	}
}

func TestSetIsolationAfter(t *testing.T) {
	m := NewMonitor("A", 0, 0, nil, nil)
	m.SetIsolationAfter(7 * time.Minute)
	if got := m.IsolationAfter(); got != 7*time.Minute {
		t.Fatalf("after SetIsolationAfter(7m): %s", got)
	}
	for _, d := range []time.Duration{0, -time.Minute} {
		m.SetIsolationAfter(d)
		if got := m.IsolationAfter(); got != 7*time.Minute {
			t.Fatalf("SetIsolationAfter(%s) changed the delay to %s; it must keep 7m", d, got)
		}
	}
}
