package membership

import (
	"fmt"
	"sort"
	"time"
)

// Defaults from DESIGN §4 and §11.
const (
	MaxClockSkew          = time.Hour
	DefaultIsolationAfter = 5 * time.Minute
	maxEvents             = 50
)

// Alarm kinds.
const (
	AlarmClockSkew      = "clock_skew"
	AlarmMemberIsolated = "member_isolated"
	// AlarmMemberDown: a peer answers neither this member nor (as far as
	// this member can tell) the third one. Member names it.
	AlarmMemberDown = "member_down"
	// AlarmLinkDown: a link between two members that are both up is down
	// (a partial network cut). Member names the far end, Message the link.
	AlarmLinkDown = "link_down"
	// AlarmQuorumLost: this failover member reaches neither peer, so no
	// majority can form with it. Member names this member.
	AlarmQuorumLost = "quorum_lost"
	// AlarmNoLeader: the cluster is formed but this member knows no leader.
	AlarmNoLeader = "no_leader"
)

// Event kinds. Event.Member names the member the event is about.
const (
	EventMemberIsolated    = "member_isolated"
	EventMemberReconnected = "member_reconnected"
	EventLinkDown          = "link_down"       // Member: the other end
	EventLinkUp            = "link_up"         // Member: the other end
	EventMemberDown        = "member_down"     // Member: the member down
	EventMemberUp          = "member_up"       // Member: the member back
	EventQuorumLost        = "quorum_lost"     // Member: this member
	EventQuorumRegained    = "quorum_regained" // Member: this member
	EventLeaderChanged     = "leader_changed"  // Member: the new leader
	EventNoLeader          = "no_leader"       // Member: the leader lost
)

// Alarm is an active condition, cleared when its cause goes.
type Alarm struct {
	Kind    string
	Member  string
	Subject string // the link ("a – b") of a link_down alarm
	Message string
	Since   time.Time
}

// Event is something that happened to this member's links or to the
// cluster as this member sees it.
type Event struct {
	Kind    string
	Member  string
	Message string
	At      time.Time
}

// ClockOffset is a peer's clock minus ours.
type ClockOffset struct {
	Peer   string
	Offset time.Duration
	Skewed bool
}

// health is the part of Monitor that turns link states into alarms and
// events. Guarded by Monitor.mu.
type health struct {
	isolationAfter time.Duration
	onEvent        []func(Event)
	reachedAny     time.Time            // last time at least one peer was up
	isolated       time.Time            // when the current isolation was reported
	skewSince      map[string]time.Time // peer -> first seen skewed
	lastState      map[string]string    // peer -> last own link state
	downAt         map[string]time.Time // peer -> last heard when its link went down
	memberDown     map[string]bool      // peer -> member_down raised (for events)
	quorumLost     bool                 // quorum_lost raised (for events)
	leaderFunc     func() (leader string, formed bool)
	leader         string    // leader at the last evaluation
	noLeaderSince  time.Time // first evaluation that found no leader (zero: a leader is known)
	events         []Event
}

func newHealth() health {
	return health{isolationAfter: DefaultIsolationAfter, skewSince: map[string]time.Time{}, lastState: map[string]string{},
		memberDown: map[string]bool{}, downAt: map[string]time.Time{}, reachedAny: time.Now()}
}

// SetLeaderFunc tells the monitor how to learn the current leader's name
// ("" when none is known) and whether the cluster is formed; it is called
// outside the monitor's lock. Without it there are no leader alarms or
// events.
func (m *Monitor) SetLeaderFunc(f func() (leader string, formed bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leaderFunc = f
}

func (m *Monitor) currentLeader() (leader string, formed bool) {
	m.mu.Lock()
	f := m.leaderFunc
	m.mu.Unlock()
	if f == nil {
		return "", false
	}
	return f()
}

// SetIsolationAfter sets how long a member must reach neither peer before
// it reports itself isolated (the setting is 1–60 minutes; tests use less).
func (m *Monitor) SetIsolationAfter(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > 0 {
		m.isolationAfter = d
	}
}

// IsolationAfter is the isolation delay in force.
func (m *Monitor) IsolationAfter() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isolationAfter
}

// OnEvent registers a function called (outside the lock) for every event,
// so the server can log it and notify. Each call adds a subscriber; they
// run in the order registered, on the monitor's goroutine, so they must
// not block.
func (m *Monitor) OnEvent(f func(Event)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onEvent = append(m.onEvent, f)
}

// evaluate updates link, member, quorum and leader events, isolation and
// clock-skew alarms.
func (m *Monitor) evaluate(now time.Time) {
	// One evaluation at a time, callbacks included, so that subscribers
	// get the events in order.
	m.evalMu.Lock()
	defer m.evalMu.Unlock()
	leader, formed := m.currentLeader()
	m.mu.Lock()
	var fired []Event
	emit := func(kind, member, msg string) {
		e := Event{Kind: kind, Member: member, Message: msg, At: now}
		m.events = append(m.events, e)
		if len(m.events) > maxEvents {
			m.events = m.events[len(m.events)-maxEvents:]
		}
		fired = append(fired, e)
	}
	anyUp := len(m.peers) == 0
	for _, p := range m.peers {
		st := m.ownStateLocked(p.Name)
		if st == LinkUp {
			anyUp = true
		}
		prev := m.lastState[p.Name]
		switch {
		case st == LinkDown && prev != LinkDown:
			m.downAt[p.Name] = m.lastHeardLocked(p.Name)
			emit(EventLinkDown, p.Name, fmt.Sprintf("link %s – %s is down: no answer from %s since %s (failure after %s)", m.self, p.Name, p.Name, clockTime(m.downAt[p.Name]), m.failAfter))
		case st == LinkUp && prev == LinkDown:
			since := m.downAt[p.Name]
			emit(EventLinkUp, p.Name, fmt.Sprintf("link %s – %s is up again (down since %s, %s)", m.self, p.Name, clockTime(since), now.Sub(since).Round(time.Second)))
		}
		m.lastState[p.Name] = st
		switch down := m.memberDownLocked(p.Name); {
		case down && !m.memberDown[p.Name]:
			emit(EventMemberDown, p.Name, fmt.Sprintf("member %s is down or cut off: no member has heard from it since %s", p.Name, clockTime(m.lastHeardLocked(p.Name))))
		case !down && m.memberDown[p.Name]:
			emit(EventMemberUp, p.Name, fmt.Sprintf("member %s is up again", p.Name))
		}
		m.memberDown[p.Name] = m.memberDownLocked(p.Name)
		off, measured := m.offsets[p.Name]
		switch skewed := measured && abs(off) > MaxClockSkew; {
		case skewed && m.skewSince[p.Name].IsZero():
			m.skewSince[p.Name] = now
		case !skewed:
			delete(m.skewSince, p.Name)
		}
	}
	switch lost := m.quorumLostLocked(); {
	case lost && !m.quorumLost:
		emit(EventQuorumLost, m.self, fmt.Sprintf("quorum lost: %s reaches neither peer, so no majority of the three members can form with it", m.self))
	case !lost && m.quorumLost:
		emit(EventQuorumRegained, m.self, fmt.Sprintf("quorum regained: %s reaches a peer again", m.self))
	}
	m.quorumLost = m.quorumLostLocked()
	if formed {
		switch {
		case leader != "" && leader != m.leader:
			was := m.leader
			if was == "" {
				was = "none"
			}
			emit(EventLeaderChanged, leader, fmt.Sprintf("leader is now %s (was %s)", leader, was))
			m.noLeaderSince = time.Time{}
		case leader == "" && m.leader != "":
			emit(EventNoLeader, m.leader, fmt.Sprintf("no leader: %s knows no leader any more (the last was %s)", m.self, m.leader))
		}
		if leader == "" && m.noLeaderSince.IsZero() {
			m.noLeaderSince = now
		}
		m.leader = leader
	}
	if anyUp {
		if !m.isolated.IsZero() {
			emit(EventMemberReconnected, m.self, fmt.Sprintf("member %s reaches its peers again after %s isolated", m.self, now.Sub(m.isolated).Round(time.Second)))
			m.isolated = time.Time{}
		}
		m.reachedAny = now
	} else if m.isolated.IsZero() && now.Sub(m.reachedAny) >= m.isolationAfter {
		// Once per isolation, by the isolated member itself.
		m.isolated = now
		emit(EventMemberIsolated, m.self, fmt.Sprintf("member isolated: %s has reached neither peer for %s", m.self, now.Sub(m.reachedAny).Round(time.Second)))
	}
	subs := m.onEvent
	m.mu.Unlock()
	for _, e := range fired {
		for _, f := range subs {
			f(e)
		}
	}
}

// memberDownLocked: peer answers neither this member nor, as far as this
// member can tell, the third member (the link between them is not up).
// A peer not yet heard within the first failure window is not down.
func (m *Monitor) memberDownLocked(peer string) bool {
	if m.ownStateLocked(peer) != LinkDown {
		return false
	}
	for _, p := range m.peers {
		if p.Name != peer && m.remoteStateLocked(p.Name, peer) == LinkUp {
			return false
		}
	}
	return true
}

// quorumLostLocked: a failover member that reaches neither peer cannot be
// part of a majority of the three.
func (m *Monitor) quorumLostLocked() bool {
	if len(m.peers) == 0 {
		return false
	}
	for _, p := range m.peers {
		if m.ownStateLocked(p.Name) != LinkDown {
			return false
		}
	}
	return true
}

// clockTime formats a wall time for messages (UTC, to the second).
func clockTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Alarms returns the active alarms, sorted by kind then member. Link,
// member and quorum alarms follow the link states of this very moment; the
// leader alarm asks the leader function now.
func (m *Monitor) Alarms() []Alarm {
	leader, formed := m.currentLeader()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Alarm
	for _, p := range m.peers {
		switch {
		case m.memberDownLocked(p.Name):
			since := m.lastHeardLocked(p.Name)
			out = append(out, Alarm{Kind: AlarmMemberDown, Member: p.Name, Since: since,
				Message: fmt.Sprintf("member %s is down or cut off: %s has not heard from it since %s and no other member reaches it; check that it runs (restart it with the same data directory) and its network", p.Name, m.self, clockTime(since))})
		case m.ownStateLocked(p.Name) == LinkDown:
			since := m.lastHeardLocked(p.Name)
			out = append(out, Alarm{Kind: AlarmLinkDown, Member: p.Name, Subject: newLink(m.self, p.Name, "").String(), Since: since,
				Message: fmt.Sprintf("link %s – %s is down since %s although both members are up: check the network between them (firewall, routes)", m.self, p.Name, clockTime(since))})
		}
	}
	if len(m.peers) == 2 {
		a, b := m.peers[0].Name, m.peers[1].Name
		if m.remoteStateLocked(a, b) == LinkDown && m.ownStateLocked(a) == LinkUp && m.ownStateLocked(b) == LinkUp {
			l := newLink(a, b, "")
			since := m.viewAt[a]
			if v, ok := m.views[a][b]; ok && v.heardAgo >= 0 {
				since = since.Add(-v.heardAgo)
			}
			out = append(out, Alarm{Kind: AlarmLinkDown, Subject: l.String(), Since: since,
				Message: fmt.Sprintf("link %s is down although both members are up (as %s sees them): check the network between them (firewall, routes)", l, m.self)})
		}
	}
	if m.quorumLostLocked() {
		since := m.started
		for _, p := range m.peers {
			if t := m.lastHeardLocked(p.Name); t.After(since) {
				since = t
			}
		}
		out = append(out, Alarm{Kind: AlarmQuorumLost, Member: m.self, Since: since,
			Message: fmt.Sprintf("quorum lost: %s reaches neither peer, so no leader can be elected with it; licenses are not served until a peer is back", m.self)})
	}
	if formed && leader == "" {
		since := m.noLeaderSince
		if since.IsZero() {
			since = time.Now()
		}
		out = append(out, Alarm{Kind: AlarmNoLeader, Member: m.self, Since: since,
			Message: fmt.Sprintf("no leader: %s knows no leader, so no license can be checked out through it; a leader needs two of the three members up and connected", m.self)})
	}
	for peer, since := range m.skewSince {
		off := m.offsets[peer]
		out = append(out, Alarm{Kind: AlarmClockSkew, Member: peer, Since: since,
			Message: fmt.Sprintf("the clock of %s differs from %s's by %s (at most %s tolerated): synchronise the clocks (NTP)", peer, m.self, off.Round(time.Second), MaxClockSkew)})
	}
	if !m.isolated.IsZero() {
		out = append(out, Alarm{Kind: AlarmMemberIsolated, Member: m.self, Since: m.isolated,
			Message: fmt.Sprintf("%s has reached neither peer since %s: check its network", m.self, m.reachedAny.UTC().Format(time.RFC3339))})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Member < out[j].Member
	})
	return out
}

// Events returns recent events, oldest first.
func (m *Monitor) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Offsets returns each measured peer's clock offset, sorted by peer.
func (m *Monitor) Offsets() []ClockOffset {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ClockOffset
	for _, p := range m.peers {
		if off, ok := m.offsets[p.Name]; ok {
			out = append(out, ClockOffset{Peer: p.Name, Offset: off, Skewed: abs(off) > MaxClockSkew})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// Isolated reports whether this member reaches neither peer right now
// (a failover member with both own links down).
func (m *Monitor) Isolated() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.peers) == 0 {
		return false
	}
	for _, p := range m.peers {
		if m.ownStateLocked(p.Name) != LinkDown {
			return false
		}
	}
	return true
}
