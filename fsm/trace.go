package fsm

import (
	"fmt"
	"slices"
	"strings"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Usage tracing and lease events (issue 14; docs/admin.md, "Usage
// tracing").
//
// Apply reports what it did to leases as LeaseEvents: every checkout
// granted, every refusal, every release and expiry, in log order, to the
// member's LeaseObserver. Apply only records the events (no clock, no I/O):
// the observer's owner logs and counts them. Which events are traced is
// replicated state (TraceSettings, set by SetTrace under a full session),
// so every member traces the same events of the same log.

// Lease event kinds.
const (
	EventCheckout = "checkout" // a lease granted (a borrow too: Borrowed set)
	EventRelease  = "release"  // released by its holder, or force-released by an administrator
	EventExpiry   = "expiry"   // ended by its TTL, its borrow end, or a countdown pool used up
	EventDenial   = "denial"   // a checkout or borrow refused
)

// Limits on the trace settings: they are replicated state.
const (
	MaxTraces       = 100
	maxTraceNameLen = 256
)

// LeaseEvent is one thing Apply did to a lease, or one refusal.
type LeaseEvent struct {
	Index   uint64 // Raft index of the entry
	NowMs   int64  // the leader's time stamped into the entry
	Event   string // EventCheckout, EventRelease, EventExpiry, EventDenial
	Feature string
	Version uint32
	User    string
	Host    string
	LeaseID uint64 // 0 for a denial
	Count   uint32
	// Reason: for a denial the code in lower case ("no_seat"), for a
	// release "released" or "force-released", for an expiry "expired",
	// "borrow ended" or "countdown pool used up"; empty for a checkout.
	Reason string
	// Message is a denial's full message.
	Message  string
	Borrowed bool
	// Licensed (denials only) says an enrolled license grants the feature:
	// a metric may carry its name as a label.
	Licensed bool
	// Traced says the trace settings cover the event: the member logs it.
	Traced bool
}

// LeaseObserver is called by Apply after each command that produced lease
// events, under the FSM's lock, in log order, on every member. It must not
// block or call the FSM; events is only valid during the call.
type LeaseObserver func(events []LeaseEvent)

// SetLeaseObserver installs o (nil removes it). Set it before Raft starts
// replaying the log so that no event is missed.
func (f *FSM) SetLeaseObserver(o LeaseObserver) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaseObserver = o
}

// Trace returns the trace settings in force (sorted copies).
func (f *FSM) Trace() (features, serials []string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.s.trace.GetFeatures()), slices.Clone(f.s.trace.GetSerials())
}

// flushLeaseEvents hands the events of the command just applied (entry
// index) to the observer. Called by applyLocked with the lock held.
func (f *FSM) flushLeaseEvents(index uint64) {
	s := f.s
	if len(s.events) == 0 {
		return
	}
	for i := range s.events {
		s.events[i].Index = index
	}
	f.leaseObserver(s.events)
	if cap(s.events) > maxKeptEvents {
		// A burst (thousands of leases expiring in one entry) left a large
		// buffer: let it go rather than have every garbage collection
		// scan it from then on.
		s.events = nil
		return
	}
	clear(s.events)
	s.events = s.events[:0]
}

// maxKeptEvents is the largest event buffer kept between entries: a
// full batch of checkouts and releases (1,024 ops) fits.
const maxKeptEvents = 2048

// emitLease records an event about lease l (when observed).
func (s *state) emitLease(now int64, event, reason string, l *lease) {
	if !s.observing {
		return
	}
	s.events = append(s.events, LeaseEvent{NowMs: now, Event: event, Feature: l.Feature, Version: l.Version,
		User: l.User, Host: l.Host, LeaseID: l.Id, Count: l.Count, Reason: reason,
		Borrowed: l.Borrowed, Traced: s.traced(l.Feature)})
}

// emitDenial records the refusal res of grant g (when observed).
func (s *state) emitDenial(now int64, g *fsmpb.Grant, res *fsmpb.OpResult) {
	if !s.observing {
		return
	}
	s.events = append(s.events, LeaseEvent{NowMs: now, Event: EventDenial, Feature: g.GetFeature(), Version: g.GetVersion(),
		User: g.GetUser(), Host: g.GetHost(), Count: max(g.GetCount(), 1), Reason: strings.ToLower(res.GetCode().String()),
		Message: res.GetMessage(), Licensed: s.knownFeature(g.GetFeature()), Traced: s.traced(g.GetFeature())})
}

// traced reports whether the trace settings cover feature: it is listed,
// or a listed license that is enrolled grants it.
func (s *state) traced(feature string) bool {
	t := s.trace
	if t == nil {
		return false
	}
	if _, ok := slices.BinarySearch(t.Features, feature); ok {
		return true
	}
	for _, serial := range t.Serials {
		for _, f := range s.licenses[serial].GetFeatures() {
			if f.GetName() == feature {
				return true
			}
		}
	}
	return false
}

// applySetTrace runs once applyCommand checked the full session.
func (s *state) applySetTrace(c *fsmpb.SetTrace) *fsmpb.OpResult {
	feature, serial := c.GetFeature(), c.GetSerial()
	if c.GetAllOff() {
		if c.GetOn() || feature != "" || serial != "" {
			return result(fsmpb.Code_INVALID_ARGUMENT, "switching every trace off takes no feature, license or on")
		}
		s.trace = nil
		return result(fsmpb.Code_OK, "tracing off")
	}
	if (feature == "") == (serial == "") {
		return result(fsmpb.Code_INVALID_ARGUMENT, "give exactly one of a feature and a license serial to trace")
	}
	name, what := feature, "feature"
	if serial != "" {
		name, what = serial, "license"
	}
	if len(name) > maxTraceNameLen {
		return result(fsmpb.Code_INVALID_ARGUMENT, "%s name is %d characters; at most %d", what, len(name), maxTraceNameLen)
	}
	t := &fsmpb.TraceSettings{Features: slices.Clone(s.trace.GetFeatures()), Serials: slices.Clone(s.trace.GetSerials())}
	list := &t.Features
	if serial != "" {
		list = &t.Serials
	}
	i, found := slices.BinarySearch(*list, name)
	switch {
	case c.GetOn() && found:
		return result(fsmpb.Code_OK, "%s %s was already traced", what, name)
	case c.GetOn():
		if serial != "" {
			if _, ok := s.licenses[serial]; !ok {
				return result(fsmpb.Code_NOT_FOUND, "no license %s is enrolled (see `triadctl license list`)", serial)
			}
		}
		if len(t.Features)+len(t.Serials) >= MaxTraces {
			return result(fsmpb.Code_INVALID_ARGUMENT, "%d traces are on, the most there can be: switch one off first", MaxTraces)
		}
		*list = slices.Insert(*list, i, name)
	case !found:
		return result(fsmpb.Code_OK, "%s %s was not traced", what, name)
	default:
		*list = slices.Delete(*list, i, i+1)
	}
	s.trace = t
	if len(t.Features)+len(t.Serials) == 0 {
		s.trace = nil
	}
	if c.GetOn() {
		return result(fsmpb.Code_OK, "tracing %s %s", what, name)
	}
	return result(fsmpb.Code_OK, "stopped tracing %s %s", what, name)
}

// traceFromSnapshot checks the snapshot's trace settings.
func traceFromSnapshot(snap *fsmpb.Snapshot) (*fsmpb.TraceSettings, error) {
	t := snap.GetTrace()
	if t == nil {
		return nil, nil
	}
	for _, l := range [][]string{t.Features, t.Serials} {
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			return nil, fmt.Errorf("fsm: snapshot trace settings are not sorted and unique")
		}
	}
	return t, nil
}
