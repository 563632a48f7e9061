package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Alarm kinds derived from the license state.
const (
	AlarmLicenseExpired  = "license_expired"
	AlarmLicenseExpiring = "license_expiring"
	AlarmOverCapacity    = "feature_over_capacity"
)

// Alarm is a condition of the replicated license state at some instant;
// it clears by itself when its cause goes.
type Alarm struct {
	Kind    string
	Subject string // serial or feature
	Message string
	SinceMs int64
}

// NamedSeats returns copies of the named seats, by feature then user.
func (f *FSM) NamedSeats() []*fsmpb.NamedSeat {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*fsmpb.NamedSeat
	for _, feat := range sortedKeys(f.s.model.named) {
		for _, u := range sortedKeys(f.s.model.named[feat]) {
			out = append(out, proto.Clone(f.s.model.named[feat][u]).(*fsmpb.NamedSeat))
		}
	}
	return out
}

// NamedSeatInUse reports whether user holds a live lease of feature.
func (f *FSM) NamedSeatInUse(feature, user string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.model.namedUse[feature][user] > 0
}

// Rules returns a copy of the access rules, or nil when none are set.
func (f *FSM) Rules() *fsmpb.AccessRules {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.s.model.rules == nil {
		return nil
	}
	return proto.Clone(f.s.model.rules).(*fsmpb.AccessRules)
}

// NeedsLicenseTick reports whether a license became valid or expired by
// the clock since the last committed command (the leader then commits a
// LicenseTick).
func (f *FSM) NeedsLicenseTick(nowMs int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.needsLicenseTick(nowMs)
}

// CountdownUse returns, for each countdown feature valid at nowMs, the pool
// (seat-ms) and its use so far.
func (f *FSM) CountdownUse(nowMs int64) map[string][2]int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string][2]int64{}
	for _, serial := range f.s.serials {
		for _, ft := range f.s.licenses[serial].Features {
			if ft.Model == modelCountdown {
				if _, done := out[ft.Name]; !done {
					out[ft.Name] = [2]int64{f.s.terms(ft.Name, nowMs).poolMs, f.s.countdownUsed(ft.Name, nowMs)}
				}
			}
		}
	}
	return out
}

// LicenseAlarms lists, at nowMs, expired licenses, licenses expiring
// within warnMs, and features whose seats in use cannot all be matched to
// licensed seats of a compatible version (a soft limit's overdraft, or
// capacity that dropped under live leases, at any version: see
// state.overCapacity), by feature name.
func (f *FSM) LicenseAlarms(nowMs, warnMs int64) []Alarm {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	var out []Alarm
	for _, serial := range s.serials {
		l := s.licenses[serial]
		switch st := s.licenseState(l, nowMs); {
		case st == StateExpired:
			out = append(out, Alarm{Kind: AlarmLicenseExpired, Subject: serial, SinceMs: l.ValidUntilMs,
				Message: fmt.Sprintf("license %s expired on %s: enroll its renewal or remove it", serial, formatTime(l.ValidUntilMs))})
		case st == StateValid && l.ValidUntilMs-nowMs <= warnMs:
			out = append(out, Alarm{Kind: AlarmLicenseExpiring, Subject: serial, SinceMs: l.ValidUntilMs - warnMs,
				Message: fmt.Sprintf("license %s expires on %s (in %.1f days): ask the vendor for its renewal",
					serial, formatTime(l.ValidUntilMs), float64(l.ValidUntilMs-nowMs)/dayMs)})
		}
	}
	features := map[string]bool{}
	for name := range s.inUse {
		features[name] = true
	}
	for name := range s.model.named {
		features[name] = true
	}
	for _, name := range sortedKeys(features) {
		over, v, inUse, licensed := s.overCapacity(name, nowMs)
		if !over {
			continue
		}
		scope := fmt.Sprintf("at version %d and above", v)
		if v == 0 {
			scope = "at any version"
		}
		out = append(out, Alarm{Kind: AlarmOverCapacity, Subject: name, SinceMs: nowMs,
			Message: fmt.Sprintf("feature %s is over capacity %s: %d seats in use, %d licensed", name, scope, inUse, licensed)})
	}
	return out
}
