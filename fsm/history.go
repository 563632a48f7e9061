package fsm

import (
	"cmp"
	"slices"
	"strings"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Usage history (issue 14, docs/reports.md).
//
// Every member derives the same history from the log: seats in use per
// feature (peak, time-weighted average, time per seat count, time over the
// licensed seats) and denials by reason, in per-minute and per-hour
// buckets, and seat time per user, host and group per hour. Time is the
// leader's now_ms stamped in each command; nothing here reads a clock,
// and every map is either keyed access or sorted before it shows.
//
// A feature's series is accounted lazily: it holds its seats in use and the
// instant up to which they are accounted; every event of the feature (a
// grant, an end of lease, a denial) first accounts the time since, at the
// old seat count, then changes it. Reads account the tail up to the last
// committed now on a copy. So an event costs O(1) plus the buckets its
// gap crosses (each bucket is made once): amortized O(1).
//
// Buckets exist only where seats were in use or checkouts were denied: a
// missing bucket inside a collection span is zero, one outside every span
// was not collected (statistics off, or before the history started).
//
// Before StartHistory is committed (the leader commits it once every member
// applies format 4) there is no history: logs written by older builds
// replay exactly as they did, and a member restoring an older snapshot
// starts with an empty history like the others.

const (
	minuteMs = 60_000
	hourMs   = 3_600_000
	// DefaultHistoryMinuteDays and DefaultHistoryHourDays are the retention
	// defaults of the per-minute and per-hour buckets.
	DefaultHistoryMinuteDays = 14
	DefaultHistoryHourDays   = 730
	// MaxHistoryDays bounds both retention settings (10 years).
	MaxHistoryDays = 3650
	// unknownFeature collects denials of names no license ever listed, so
	// made-up names never create series.
	unknownFeature = "(unknown)"
)

type usageKey struct {
	hour          int64
	feature, kind string
	name          string
}

func (k usageKey) less(o usageKey) int {
	return cmp.Or(cmp.Compare(k.hour, o.hour), cmp.Compare(k.feature, o.feature),
		cmp.Compare(k.kind, o.kind), cmp.Compare(k.name, o.name))
}

type denialTotalKey struct{ feature, reason string }

type history struct {
	startedMs int64
	spans     []*fsmpb.CollectionSpan
	features  map[string]*featureHist
	usage     map[usageKey]int64
	// usageMinHour is ≤ the smallest hour in usage (trimming skips the scan
	// until the cutoff passes it).
	usageMinHour int64
	denials      map[denialTotalKey]*fsmpb.DenialTotal
}

type featureHist struct {
	seats     uint32
	accounted int64
	capacity  []*fsmpb.CapacityChange
	minutes   []*fsmpb.HistoryBucket
	hours     []*fsmpb.HistoryBucket
}

func (h *history) collecting() bool {
	return len(h.spans) > 0 && h.spans[len(h.spans)-1].OffMs == 0
}

func (fh *featureHist) capAt(t int64) uint32 {
	i, _ := slices.BinarySearchFunc(fh.capacity, t+1, func(c *fsmpb.CapacityChange, t int64) int { return cmp.Compare(c.AtMs, t) })
	if i == 0 {
		return 0
	}
	return fh.capacity[i-1].Seats
}

func (fh *featureHist) curCap() uint32 {
	if len(fh.capacity) == 0 {
		return 0
	}
	return fh.capacity[len(fh.capacity)-1].Seats
}

func floorTo(t, width int64) int64 {
	r := t % width
	if r < 0 {
		r += width
	}
	return t - r
}

// bucketAt returns the bucket of list starting at start, appending it
// (with peak seats) when the last one starts earlier.
func bucketAt(list *[]*fsmpb.HistoryBucket, start int64, seats uint32) *fsmpb.HistoryBucket {
	if n := len(*list); n > 0 && (*list)[n-1].StartMs >= start {
		return (*list)[n-1]
	}
	b := &fsmpb.HistoryBucket{StartMs: start, Peak: seats}
	*list = append(*list, b)
	return b
}

func addLevel(b *fsmpb.HistoryBucket, seats uint32, ms int64) {
	if seats == 0 || ms <= 0 {
		return
	}
	i, ok := slices.BinarySearchFunc(b.Levels, seats, func(l *fsmpb.LevelTime, s uint32) int { return cmp.Compare(l.Seats, s) })
	if ok {
		b.Levels[i].Ms += ms
		return
	}
	b.Levels = slices.Insert(b.Levels, i, &fsmpb.LevelTime{Seats: seats, Ms: ms})
}

// walk accounts seats over [a, b) in list's buckets of width.
func walk(list *[]*fsmpb.HistoryBucket, width, a, b int64, seats, capacity uint32) {
	for t := a; t < b; {
		start := floorTo(t, width)
		end := min(b, start+width)
		d := end - t
		bk := bucketAt(list, start, seats)
		bk.Peak = max(bk.Peak, seats)
		bk.SeatMs += uint64(seats) * uint64(d)
		if seats > capacity {
			bk.OverMs += d
		}
		addLevel(bk, seats, d)
		t = end
	}
}

// advance accounts fh's seats from fh.accounted up to now.
// Buckets before the retention cutoffs are not made at all: a long gap (a
// leader clock jump) costs at most the retention's buckets, never the
// whole gap's.
func (s *state) advance(fh *featureHist, now int64) {
	h := s.hist
	if now <= fh.accounted {
		return
	}
	if h.collecting() && fh.seats > 0 {
		capacity := fh.curCap()
		mc, hc := s.retention(now)
		walk(&fh.minutes, minuteMs, max(fh.accounted, mc), now, fh.seats, capacity)
		walk(&fh.hours, hourMs, max(fh.accounted, hc), now, fh.seats, capacity)
	}
	fh.accounted = now
}

func (s *state) featureSeats(feature string) uint32 {
	var n uint64
	if u := s.inUse[feature]; u != nil {
		for _, v := range u.byVersion {
			n += v.count
		}
	}
	n += uint64(len(s.model.namedUse[feature]))
	return clamp32(n)
}

func (s *state) featureCapacity(feature string, now int64) uint32 {
	var n uint64
	for _, v := range s.supply(feature, now, false) {
		n += v.count
	}
	return clamp32(n)
}

// histFeature returns feature's series, made (accounted from now, seats
// as before the event being recorded) on first use.
func (s *state) histFeature(now int64, feature string, seatsBefore uint32) *featureHist {
	h := s.hist
	fh := h.features[feature]
	if fh == nil {
		fh = &featureHist{seats: seatsBefore, accounted: now}
		if feature != unknownFeature {
			fh.capacity = []*fsmpb.CapacityChange{{AtMs: now, Seats: s.featureCapacity(feature, now)}}
		}
		h.features[feature] = fh
	}
	return fh
}

// histSeatsChanged records that feature's seats in use changed at now (a
// grant or the end of a lease): call after the change.
func (s *state) histSeatsChanged(now int64, feature string) {
	if s.hist == nil {
		return
	}
	h := s.hist
	fh := s.histFeature(now, feature, 0)
	s.advance(fh, now)
	fh.seats = s.featureSeats(feature)
	if h.collecting() && fh.seats > 0 {
		for _, list := range []*[]*fsmpb.HistoryBucket{&fh.minutes, &fh.hours} {
			width := int64(minuteMs)
			if list == &fh.hours {
				width = hourMs
			}
			b := bucketAt(list, floorTo(now, width), fh.seats)
			b.Peak = max(b.Peak, fh.seats)
		}
	}
	s.trimFeature(now, fh)
}

// histLeaseEnded adds an ended lease's seat time to its user's, host's and
// groups' hours.
func (s *state) histLeaseEnded(now int64, l *lease) {
	if s.hist == nil {
		return
	}
	h := s.hist
	names := s.usageNames(l)
	h.leaseSpans(l, now, func(hour, ms int64) {
		for _, n := range names {
			k := usageKey{hour: hour, feature: l.Feature, kind: n[0], name: n[1]}
			if _, ok := h.usage[k]; !ok && (len(h.usage) == 0 || hour < h.usageMinHour) {
				h.usageMinHour = hour
			}
			h.usage[k] += ms
		}
	})
}

// usageNames lists the (kind, name) pairs a lease's seat time counts for:
// its user, its host and the access rules' groups holding either (by name,
// once each), sorted.
func (s *state) usageNames(l *lease) [][2]string {
	out := [][2]string{{"user", l.User}, {"host", l.Host}}
	if ri := s.model.ri; ri != nil {
		var groups []string
		for k, members := range ri.groups { // sorted below
			if (k.kind == "user" && members[l.User]) || (k.kind == "host" && members[l.Host]) {
				groups = append(groups, k.name)
			}
		}
		slices.Sort(groups)
		for _, g := range slices.Compact(groups) {
			out = append(out, [2]string{"group", g})
		}
	}
	return out
}

// leaseSpans calls fn with the collected seat-ms of l over [granted, end)
// per hour, in order.
func (h *history) leaseSpans(l *lease, end int64, fn func(hour, ms int64)) {
	count := int64(max(l.Count, 1))
	for _, sp := range h.spans {
		a := max(l.GrantedMs, sp.OnMs)
		b := end
		if sp.OffMs != 0 {
			b = min(b, sp.OffMs)
		}
		for t := a; t < b; {
			hour := floorTo(t, hourMs)
			e := min(b, hour+hourMs)
			fn(hour, (e-t)*count)
			t = e
		}
	}
}

// histDenial counts a refused checkout.
func (s *state) histDenial(now int64, g *fsmpb.Grant, code fsmpb.Code, msg string) {
	if s.hist == nil || !s.hist.collecting() {
		return
	}
	h := s.hist
	feature := g.GetFeature()
	if _, tracked := h.features[feature]; !tracked && !s.knownFeature(feature) {
		feature = unknownFeature
	}
	fh := s.histFeature(now, feature, s.featureSeats(feature))
	s.advance(fh, now)
	reason, detail := DenialReason(code), DenialDetail(code, msg)
	if code == fsmpb.Code_NO_SEAT && strings.HasPrefix(msg, NeverFitsPrefix) {
		// More seats than the feature has in all: not a busy signal.
		reason, detail = "can_never_fit", "can never fit"
	}
	for _, list := range []*[]*fsmpb.HistoryBucket{&fh.minutes, &fh.hours} {
		width := int64(minuteMs)
		if list == &fh.hours {
			width = hourMs
		}
		b := bucketAt(list, floorTo(now, width), fh.seats)
		i, ok := slices.BinarySearchFunc(b.Denials, reason, func(r *fsmpb.ReasonCount, x string) int { return cmp.Compare(r.Reason, x) })
		if !ok {
			b.Denials = slices.Insert(b.Denials, i, &fsmpb.ReasonCount{Reason: reason})
		}
		b.Denials[i].Count++
	}
	k := denialTotalKey{feature, detail}
	t := h.denials[k]
	if t == nil {
		t = &fsmpb.DenialTotal{Feature: feature, Reason: k.reason}
		h.denials[k] = t
	}
	t.Count++
	t.LastMs = now
	s.trimFeature(now, fh)
}

// DenialDetail names a refusal as `usage denials` counts it: like
// DenialReason, with the rule's name for a rule denial.
func DenialDetail(code fsmpb.Code, msg string) string {
	switch code {
	case fsmpb.Code_NO_SEAT:
		return "no seat"
	case fsmpb.Code_UNKNOWN_FEATURE:
		return "unknown feature"
	case fsmpb.Code_VERSION_TOO_NEW:
		return "version too new"
	case fsmpb.Code_LICENSE_EXPIRED:
		return "license expired"
	case fsmpb.Code_POOL_EXHAUSTED:
		return "countdown pool used up"
	case fsmpb.Code_BORROW_NOT_ALLOWED:
		return "borrowing not allowed"
	case fsmpb.Code_DENIED_BY_RULE:
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "denied by rule "), ": ")
		return "denied by rule " + name
	case fsmpb.Code_NOT_FORMED:
		return "cluster not formed"
	case fsmpb.Code_INVALID_ARGUMENT:
		return "invalid request"
	case fsmpb.Code_WRONG_LEASE_SECRET:
		return "wrong lease secret"
	}
	return strings.ToLower(strings.ReplaceAll(code.String(), "_", " "))
}

// DenialReason names a refusal code as reports and metrics show it.
func DenialReason(code fsmpb.Code) string {
	switch code {
	case fsmpb.Code_NO_SEAT:
		return "no_seat"
	case fsmpb.Code_UNKNOWN_FEATURE:
		return "unknown_feature"
	case fsmpb.Code_VERSION_TOO_NEW:
		return "version_too_new"
	case fsmpb.Code_LICENSE_EXPIRED:
		return "license_expired"
	case fsmpb.Code_LICENSE_NOT_YET_VALID:
		return "not_yet_valid"
	case fsmpb.Code_SUPERSEDED:
		return "superseded"
	case fsmpb.Code_DENIED_BY_RULE:
		return "rule"
	case fsmpb.Code_POOL_EXHAUSTED:
		return "pool_exhausted"
	case fsmpb.Code_BORROW_NOT_ALLOWED:
		return "borrow_not_allowed"
	case fsmpb.Code_INVALID_ARGUMENT:
		return "invalid"
	case fsmpb.Code_QUEUE_TIMEOUT:
		return "queue_timeout"
	case fsmpb.Code_QUEUE_LEFT:
		return "queue_left"
	}
	return "other"
}

// histCapacityChanged re-reads every tracked and licensed feature's
// licensed seats at now (after an enrollment, a removal, a license tick or
// a member replacement): rare, so O(features × licenses) is fine.
func (s *state) histCapacityChanged(now int64) {
	if s.hist == nil {
		return
	}
	for _, name := range s.histFeatureNames() {
		fh := s.histFeature(now, name, s.featureSeats(name))
		s.advance(fh, now)
		c := s.featureCapacity(name, now)
		if fh.curCap() != c || len(fh.capacity) == 0 {
			fh.capacity = append(fh.capacity, &fsmpb.CapacityChange{AtMs: now, Seats: c})
		}
	}
}

// histFeatureNames is every licensed or tracked feature, sorted.
func (s *state) histFeatureNames() []string {
	var names []string
	for _, serial := range s.serials {
		for _, f := range s.licenses[serial].Features {
			names = append(names, f.Name)
		}
	}
	for name := range s.hist.features {
		if name != unknownFeature {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// allFormat4 tells whether the log has committed StartHistory, which the
// leader proposes only once every member applies format 4: from there on,
// Apply may answer in ways format-3 members did not (the "can never fit"
// refusal), with no member left to answer differently. Entries before it
// replay as written.
func (s *state) allFormat4() bool { return s.hist != nil }

// applyStartHistory starts the history at now (once).
func (s *state) applyStartHistory(now int64) *fsmpb.OpResult {
	if s.hist != nil {
		return result(fsmpb.Code_ALREADY_EXISTS, "the usage history started at %d", s.hist.startedMs)
	}
	s.hist = newHistory(now)
	if s.admin.effective().Statistics {
		s.hist.spans = []*fsmpb.CollectionSpan{{OnMs: now}}
	}
	s.histCapacityChanged(now)
	return result(fsmpb.Code_OK, "usage history started")
}

func newHistory(now int64) *history {
	return &history{startedMs: now, features: map[string]*featureHist{}, usage: map[usageKey]int64{},
		denials: map[denialTotalKey]*fsmpb.DenialTotal{}}
}

// histSettingsChanged follows the statistics setting and trims to the
// retention settings after a SetSettings.
func (s *state) histSettingsChanged(now int64) {
	if s.hist == nil {
		return
	}
	h := s.hist
	on := s.admin.effective().Statistics
	if on != h.collecting() {
		// Account every series up to the switch first.
		for _, name := range sortedKeys(h.features) {
			s.advance(h.features[name], now)
		}
		if on {
			h.spans = append(h.spans, &fsmpb.CollectionSpan{OnMs: now})
		} else {
			h.spans[len(h.spans)-1].OffMs = now
			if h.spans[len(h.spans)-1].OffMs == h.spans[len(h.spans)-1].OnMs {
				h.spans = h.spans[:len(h.spans)-1]
			}
		}
	}
	s.histTrim(now)
}

// retention returns the cutoffs: buckets starting before them are dropped.
func (s *state) retention(now int64) (minuteCut, hourCut int64) {
	st := s.admin.settings
	md, hd := int64(DefaultHistoryMinuteDays), int64(DefaultHistoryHourDays)
	if st != nil && st.HistoryMinuteDays != nil {
		md = int64(st.GetHistoryMinuteDays())
	}
	if st != nil && st.HistoryHourDays != nil {
		hd = int64(st.GetHistoryHourDays())
	}
	return floorTo(now, minuteMs) - md*dayMs, floorTo(now, hourMs) - hd*dayMs
}

// trimFeature drops fh's buckets older than the retention: they leave from
// the front, so this is amortized O(1).
func (s *state) trimFeature(now int64, fh *featureHist) {
	mc, hc := s.retention(now)
	i := 0
	for i < len(fh.minutes) && fh.minutes[i].StartMs < mc {
		i++
	}
	if i > 0 {
		fh.minutes = slices.Delete(fh.minutes, 0, i)
	}
	i = 0
	for i < len(fh.hours) && fh.hours[i].StartMs < hc {
		i++
	}
	if i > 0 {
		fh.hours = slices.Delete(fh.hours, 0, i)
	}
	// Keep the capacity in effect at the cutoff.
	i = 0
	for i+1 < len(fh.capacity) && fh.capacity[i+1].AtMs <= hc {
		i++
	}
	if i > 0 {
		fh.capacity = slices.Delete(fh.capacity, 0, i)
	}
}

// histTrim applies the retention to the whole history (expiry ticks,
// license ticks and settings changes).
func (s *state) histTrim(now int64) {
	if s.hist == nil {
		return
	}
	h := s.hist
	_, hc := s.retention(now)
	for _, name := range sortedKeys(h.features) {
		fh := h.features[name]
		s.trimFeature(now, fh)
		if fh.seats == 0 && len(fh.minutes) == 0 && len(fh.hours) == 0 && !s.knownFeature(name) {
			delete(h.features, name)
		}
	}
	if len(h.usage) > 0 && h.usageMinHour < hc {
		first := true
		for k := range h.usage { // each key is judged alone; the min is order-free
			if k.hour < hc {
				delete(h.usage, k)
			} else if first || k.hour < h.usageMinHour {
				h.usageMinHour, first = k.hour, false
			}
		}
	}
	i := 0
	for i < len(h.spans) && h.spans[i].OffMs != 0 && h.spans[i].OffMs < hc {
		i++
	}
	if i > 0 {
		h.spans = slices.Delete(h.spans, 0, i)
	}
}

// Snapshot and restore.

func (h *history) toSnapshot() *fsmpb.History {
	out := &fsmpb.History{StartedMs: h.startedMs, Spans: h.spans}
	for _, name := range sortedKeys(h.features) {
		fh := h.features[name]
		out.Features = append(out.Features, &fsmpb.FeatureHistory{Feature: name, Seats: fh.seats,
			AccountedMs: fh.accounted, Capacity: fh.capacity, Minutes: fh.minutes, Hours: fh.hours})
	}
	keys := make([]usageKey, 0, len(h.usage))
	for k := range h.usage {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, usageKey.less)
	out.Usage = make([]*fsmpb.UsageHours, 0, len(keys))
	for _, k := range keys {
		out.Usage = append(out.Usage, &fsmpb.UsageHours{HourMs: k.hour, Feature: k.feature, Kind: k.kind, Name: k.name, SeatMs: h.usage[k]})
	}
	dk := make([]denialTotalKey, 0, len(h.denials))
	for k := range h.denials {
		dk = append(dk, k)
	}
	slices.SortFunc(dk, func(a, b denialTotalKey) int {
		return cmp.Or(cmp.Compare(a.feature, b.feature), cmp.Compare(a.reason, b.reason))
	})
	for _, k := range dk {
		out.DenialTotals = append(out.DenialTotals, h.denials[k])
	}
	return out
}

func historyFromSnapshot(p *fsmpb.History) *history {
	if p == nil {
		return nil
	}
	h := newHistory(p.StartedMs)
	h.spans = p.Spans
	for _, f := range p.Features {
		h.features[f.Feature] = &featureHist{seats: f.Seats, accounted: f.AccountedMs, capacity: f.Capacity,
			minutes: f.Minutes, hours: f.Hours}
	}
	for i, u := range p.Usage {
		if i == 0 {
			h.usageMinHour = u.HourMs
		}
		h.usage[usageKey{hour: u.HourMs, feature: u.Feature, kind: u.Kind, name: u.Name}] += u.SeatMs
	}
	for _, d := range p.DenialTotals {
		h.denials[denialTotalKey{d.Feature, d.Reason}] = d
	}
	return h
}

func init() {
	// The retention settings are new fields of SetSettings: an older build
	// would ignore them, so they need format 4 like StartHistory.
	commandFormatHooks = append(commandFormatHooks, func(cmd *fsmpb.Command) (uint32, string) {
		if st := cmd.GetSetSettings().GetSettings(); st != nil && (st.HistoryMinuteDays != nil || st.HistoryHourDays != nil) {
			return 4, "set_settings.history_retention"
		}
		return 1, ""
	})
}

// HistoryStarted reports whether the usage history was started (the
// leader commits StartHistory once every member applies format 4).
func (f *FSM) HistoryStarted() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.s.hist != nil
}
