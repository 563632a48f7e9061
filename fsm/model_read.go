package fsm

import (
	"cmp"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Alarm kinds derived from the license state.
const (
	AlarmLicenseExpired  = "license_expired"
	AlarmLicenseExpiring = "license_expiring"
	AlarmOverCapacity    = "feature_over_capacity"
	AlarmPoolLow         = "countdown_pool_low"
)

// poolLowDivisor sets the countdown_pool_low threshold: the alarm is raised
// when less than 1/poolLowDivisor (10%) of a countdown pool is left, used
// up included (docs/decisions.md).
const poolLowDivisor = 10

// FeatureRow is a usage row with its feature's licensing model and, for a
// countdown feature, the feature's pool: it is the feature's (all versions,
// all valid licenses), so each of its version rows carries the same figures.
type FeatureRow struct {
	Usage
	// Model is that of the feature's highest-version valid entry (see
	// terms): concurrent, named-user or countdown; empty when no valid
	// license grants the feature.
	Model string
	// PoolMs is a countdown feature's pool in seat-ms (0 for other models).
	PoolMs int64
	// PoolUsedMs is the seat-ms of the pool used at the read's now: the time
	// already charged plus the running time of live leases since they were
	// last charged. It may exceed PoolMs until the leases' next renewal
	// ends them.
	PoolUsedMs int64
	// Package is set on a component's row: the package whose seats serve
	// it (the row repeats the package's capacity; InUse counts the package
	// seats of the users and hosts holding the component).
	Package string
}

// FeatureRows returns Usage(nowMs) with each feature's model and countdown
// pool at nowMs, read together.
func (f *FSM) FeatureRows(nowMs int64) []FeatureRow {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	out := s.componentRows(s.usage(nowMs))
	type figures struct {
		model        string
		pool, usedMs int64
	}
	byFeature := map[string]figures{}
	for i, u := range out {
		name := cmp.Or(u.Package, u.Feature)
		fig, ok := byFeature[name]
		if !ok {
			fig.model, fig.pool, fig.usedMs = s.featurePool(name, nowMs)
			byFeature[name] = fig
		}
		out[i].Model, out[i].PoolMs, out[i].PoolUsedMs = fig.model, fig.pool, fig.usedMs
	}
	return out
}

// featurePool returns feature's model at now ("" when no valid license
// grants it) and, for a countdown feature, its pool and the pool's use
// (seat-ms).
func (s *state) featurePool(feature string, now int64) (model string, poolMs, usedMs int64) {
	t := s.terms(feature, now)
	switch {
	case !t.licensed:
		return "", 0, 0
	case t.model != modelCountdown:
		return t.model, 0, 0
	}
	return t.model, t.poolMs, s.countdownUsed(feature, now)
}

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
// within warnMs, features whose seats in use cannot all be matched to
// licensed seats of a compatible version (a soft limit's overdraft, or
// capacity that dropped under live leases, at any version: see
// state.overCapacity), by feature name, and countdown features with less
// than a tenth of their pool left (used up included), by feature name.
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
		scope := fmt.Sprintf("at version %s and above", versionLabel(v))
		if v == 0 {
			scope = "at any version"
		}
		out = append(out, Alarm{Kind: AlarmOverCapacity, Subject: name, SinceMs: nowMs,
			Message: fmt.Sprintf("feature %s is over capacity %s: %d seats in use, %d licensed", name, scope, inUse, licensed)})
	}
	return append(out, s.poolAlarms(nowMs)...)
}

// poolAlarms raises countdown_pool_low for each countdown feature valid at
// now with less than 1/poolLowDivisor of its pool left. Like the other
// license alarms it is derived at each read, so it clears when the cause
// goes (a license with more hours enrolled, the license gone).
func (s *state) poolAlarms(now int64) []Alarm {
	features := map[string]bool{}
	for _, serial := range s.serials {
		if l := s.licenses[serial]; s.licenseValid(l, now) {
			for _, f := range l.Features {
				if f.Model == modelCountdown {
					features[f.Name] = true
				}
			}
		}
	}
	var out []Alarm
	for _, name := range sortedKeys(features) {
		model, pool, used := s.featurePool(name, now)
		if model != modelCountdown || pool <= 0 {
			continue
		}
		left := pool - used
		if left >= pool/poolLowDivisor {
			continue
		}
		msg := fmt.Sprintf("the countdown pool of %s is low: %s of %s seat-hours left (under %d%%): enroll a license with more hours",
			name, hours(left), hours(pool), 100/poolLowDivisor)
		if left <= 0 {
			msg = fmt.Sprintf("the countdown pool of %s is used up (%s of %s seat-hours): checkouts are refused and held seats end at their next renewal; enroll a license with more hours",
				name, hours(used), hours(pool))
		}
		out = append(out, Alarm{Kind: AlarmPoolLow, Subject: name, SinceMs: now, Message: msg})
	}
	return out
}
