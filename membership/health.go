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
)

// Event kinds.
const (
	EventMemberIsolated    = "member_isolated"
	EventMemberReconnected = "member_reconnected"
	EventLinkDown          = "link_down"
	EventLinkUp            = "link_up"
)

// Alarm is an active condition, cleared when its cause goes.
type Alarm struct {
	Kind    string
	Member  string
	Message string
	Since   time.Time
}

// Event is something that happened to this member's links.
type Event struct {
	Kind    string
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
	events         []Event
}

func newHealth() health {
	return health{isolationAfter: DefaultIsolationAfter, skewSince: map[string]time.Time{}, lastState: map[string]string{}, reachedAny: time.Now()}
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

// evaluate updates link events, isolation and clock-skew alarms.
func (m *Monitor) evaluate(now time.Time) {
	m.mu.Lock()
	var fired []Event
	emit := func(kind, msg string) {
		e := Event{Kind: kind, Message: msg, At: now}
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
			emit(EventLinkDown, fmt.Sprintf("link %s – %s is down: no answer from %s for %s", m.self, p.Name, p.Name, m.failAfter))
		case st == LinkUp && prev == LinkDown:
			emit(EventLinkUp, fmt.Sprintf("link %s – %s is up again", m.self, p.Name))
		}
		m.lastState[p.Name] = st
		off, measured := m.offsets[p.Name]
		switch skewed := measured && abs(off) > MaxClockSkew; {
		case skewed && m.skewSince[p.Name].IsZero():
			m.skewSince[p.Name] = now
		case !skewed:
			delete(m.skewSince, p.Name)
		}
	}
	if anyUp {
		if !m.isolated.IsZero() {
			emit(EventMemberReconnected, fmt.Sprintf("member %s reaches its peers again after %s isolated", m.self, now.Sub(m.isolated).Round(time.Second)))
			m.isolated = time.Time{}
		}
		m.reachedAny = now
	} else if m.isolated.IsZero() && now.Sub(m.reachedAny) >= m.isolationAfter {
		// Once per isolation, by the isolated member itself.
		m.isolated = now
		emit(EventMemberIsolated, fmt.Sprintf("member isolated: %s has reached neither peer for %s", m.self, now.Sub(m.reachedAny).Round(time.Second)))
	}
	subs := m.onEvent
	m.mu.Unlock()
	for _, e := range fired {
		for _, f := range subs {
			f(e)
		}
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Alarms returns the active alarms, sorted by kind then member.
func (m *Monitor) Alarms() []Alarm {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Alarm
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
