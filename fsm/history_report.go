package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Reports over the usage history (docs/reports.md; the JSON shapes are the
// contract of /v1/history/*). Every report is computed from the replicated
// state up to the last committed now, so members at the same applied
// index give identical answers.

// HistoryQuery selects a report's range and grouping. Times are Unix ms.
type HistoryQuery struct {
	Feature  string
	From, To int64
	// Step: minute, hour, day or month (usage).
	Step string
	// By: user, host or group; Top: at most that many rows, 0 = all (users).
	By  string
	Top int
	// Levels are the compliance thresholds: peak as a percentage of the
	// entitlement above which the level is 2, 3, 4 and 5.
	Levels [4]float64
}

// DefaultComplianceLevels are the default compliance thresholds.
var DefaultComplianceLevels = [4]float64{90, 100, 110, 125}

// LevelNames names compliance levels 1 to 5.
var LevelNames = [6]string{"", "ok", "notice", "warning", "alert", "critical"}

// maxPoints bounds one usage report.
const maxPoints = 50_000

// HistoryPoint is one bucket of a usage report.
type HistoryPoint struct {
	T        int64             `json:"t"`
	Peak     uint32            `json:"peak"`
	Average  float64           `json:"average"`
	Capacity uint32            `json:"capacity"`
	Denials  map[string]uint64 `json:"denials"`
	// Collected is false when no part of the bucket was collected
	// (statistics off, before the history started or beyond retention).
	Collected   bool  `json:"collected"`
	CollectedMs int64 `json:"collected_ms"`
	OverMs      int64 `json:"over_ms"`
}

// UsageSeries is one feature's usage report.
type UsageSeries struct {
	Feature string         `json:"feature"`
	Step    string         `json:"step"`
	From    int64          `json:"from"`
	To      int64          `json:"to"`
	Points  []HistoryPoint `json:"points"`
}

// UsageReport is /v1/history/usage without a feature.
type UsageReport struct {
	Step     string        `json:"step"`
	From     int64         `json:"from"`
	To       int64         `json:"to"`
	Features []UsageSeries `json:"features"`
}

// UtilizationBucket is the time spent with exactly Seats in use.
type UtilizationBucket struct {
	Seats uint32  `json:"seats"`
	Share float64 `json:"share"`
	Ms    int64   `json:"ms"`
}

// UtilizationReport is /v1/history/utilization.
type UtilizationReport struct {
	Feature     string              `json:"feature"`
	From        int64               `json:"from"`
	To          int64               `json:"to"`
	Capacity    uint32              `json:"capacity"`
	CollectedMs int64               `json:"collected_ms"`
	Buckets     []UtilizationBucket `json:"buckets"`
}

// UserRow is one row of a users report.
type UserRow struct {
	Name  string  `json:"name"`
	Hours float64 `json:"hours"`
}

// UsersReport is /v1/history/users.
type UsersReport struct {
	Feature string    `json:"feature"`
	By      string    `json:"by"`
	From    int64     `json:"from"`
	To      int64     `json:"to"`
	Rows    []UserRow `json:"rows"`
}

// ComplianceRow is one feature of a compliance report.
type ComplianceRow struct {
	Feature        string  `json:"feature"`
	Entitlement    uint32  `json:"entitlement"`
	Peak           uint32  `json:"peak"`
	PeakPercent    float64 `json:"peak_percent"`
	OverCapacityMs int64   `json:"over_capacity_ms"`
	Level          int     `json:"level"`
	LevelName      string  `json:"level_name"`
}

// ComplianceReport is /v1/history/compliance.
type ComplianceReport struct {
	From     int64           `json:"from"`
	To       int64           `json:"to"`
	Levels   [4]float64      `json:"levels"`
	Features []ComplianceRow `json:"features"`
}

// ErrNoHistory is returned before the history started.
var ErrNoHistory = fmt.Errorf("the usage history has not started yet: the leader starts it once every member runs a build of command format %d (see docs/reports.md)", 4)

// HistoryNow is the last committed now (reports reach up to it) and when
// the history started (0 when it has not).
func (f *FSM) HistoryNow() (lastNowMs, startedMs int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.s.hist != nil {
		startedMs = f.s.hist.startedMs
	}
	return f.s.lastNowMs, startedMs
}

// view returns list with its tail accounted up to upTo (a copy: the state
// is not changed).
func (s *state) view(fh *featureHist, hours bool, upTo int64) []*fsmpb.HistoryBucket {
	h := s.hist
	mc, hc := s.retention(upTo)
	list, width, cut := fh.minutes, int64(minuteMs), mc
	if hours {
		list, width, cut = fh.hours, hourMs, hc
	}
	if !h.collecting() || fh.seats == 0 || upTo <= fh.accounted {
		return list
	}
	base := list
	var tail []*fsmpb.HistoryBucket
	if n := len(list); n > 0 && list[n-1].StartMs == floorTo(fh.accounted, width) {
		tail = []*fsmpb.HistoryBucket{proto.Clone(list[n-1]).(*fsmpb.HistoryBucket)}
		base = list[:n-1]
	}
	walk(&tail, width, max(fh.accounted, cut), upTo, fh.seats, fh.curCap())
	return append(slices.Clip(base), tail...)
}

// collectedMs is the collected time within [a, b).
func (h *history) collectedMs(a, b int64) int64 {
	var n int64
	for _, sp := range h.spans {
		end := b
		if sp.OffMs != 0 {
			end = min(end, sp.OffMs)
		}
		if s := max(a, sp.OnMs); end > s {
			n += end - s
		}
	}
	return n
}

// periodEnd returns the end of the period of step starting at t (UTC).
func periodEnd(t int64, step string) int64 {
	switch step {
	case "minute":
		return t + minuteMs
	case "hour":
		return t + hourMs
	case "day":
		return t + dayMs
	}
	tm := time.UnixMilli(t).UTC()
	return time.Date(tm.Year(), tm.Month()+1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
}

// periodStart returns the start of the period of step holding t (UTC).
func periodStart(t int64, step string) int64 {
	switch step {
	case "minute":
		return floorTo(t, minuteMs)
	case "hour":
		return floorTo(t, hourMs)
	case "day":
		return floorTo(t, dayMs)
	}
	tm := time.UnixMilli(t).UTC()
	return time.Date(tm.Year(), tm.Month(), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
}

func validStep(step string) error {
	switch step {
	case "minute", "hour", "day", "month":
		return nil
	}
	return fmt.Errorf("step %q: want minute, hour, day or month", step)
}

func (s *state) series(name string, fh *featureHist, q HistoryQuery, upTo int64) (UsageSeries, error) {
	h := s.hist
	mc, hc := s.retention(upTo)
	useMinutes := q.Step == "minute"
	cut := hc
	if useMinutes {
		cut = mc
	}
	list := s.view(fh, !useMinutes, upTo)
	out := UsageSeries{Feature: name, Step: q.Step, From: q.From, To: q.To, Points: []HistoryPoint{}}
	i := 0
	for t := periodStart(q.From, q.Step); t < q.To && t <= upTo; t = periodEnd(t, q.Step) {
		if len(out.Points) >= maxPoints {
			return out, fmt.Errorf("the report would have more than %d points: use a larger step or a shorter range", maxPoints)
		}
		end := periodEnd(t, q.Step)
		p := HistoryPoint{T: t, Denials: map[string]uint64{}}
		p.CollectedMs = h.collectedMs(max(t, cut), min(end, upTo))
		p.Collected = p.CollectedMs > 0
		p.Capacity = fh.capAt(min(end, upTo) - 1)
		for i < len(list) && list[i].StartMs < t {
			i++
		}
		var seatMs uint64
		for ; i < len(list) && list[i].StartMs < end; i++ {
			b := list[i]
			if b.StartMs < cut {
				continue
			}
			p.Peak = max(p.Peak, b.Peak)
			seatMs += b.SeatMs
			p.OverMs += b.OverMs
			for _, d := range b.Denials {
				p.Denials[d.Reason] += d.Count
			}
		}
		if p.CollectedMs > 0 {
			p.Average = float64(seatMs) / float64(p.CollectedMs)
		}
		out.Points = append(out.Points, p)
	}
	return out, nil
}

// HistoryUsage is the usage report of q.Feature, or of every feature
// (sorted) when it is empty.
func (f *FSM) HistoryUsage(q HistoryQuery) (*UsageSeries, *UsageReport, error) {
	if err := validStep(q.Step); err != nil {
		return nil, nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	if s.hist == nil {
		return nil, nil, ErrNoHistory
	}
	upTo := s.lastNowMs
	if q.Feature != "" {
		fh := s.hist.features[q.Feature]
		if fh == nil {
			return nil, nil, fmt.Errorf("feature %q: no license lists it and no history holds it", q.Feature)
		}
		one, err := s.series(q.Feature, fh, q, upTo)
		return &one, nil, err
	}
	all := &UsageReport{Step: q.Step, From: q.From, To: q.To, Features: []UsageSeries{}}
	for _, name := range sortedKeys(s.hist.features) {
		one, err := s.series(name, s.hist.features[name], q, upTo)
		if err != nil {
			return nil, nil, err
		}
		all.Features = append(all.Features, one)
	}
	return nil, all, nil
}

// HistoryUtilization is the share of collected time in [From, To) with
// exactly k seats of q.Feature in use. It reads per-minute buckets when
// the range lies in the minute window, per-hour ones otherwise; the range
// is widened to whole buckets.
func (f *FSM) HistoryUtilization(q HistoryQuery) (*UtilizationReport, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	if s.hist == nil {
		return nil, ErrNoHistory
	}
	h := s.hist
	fh := h.features[q.Feature]
	if fh == nil {
		return nil, fmt.Errorf("feature %q: no license lists it and no history holds it", q.Feature)
	}
	upTo := s.lastNowMs
	mc, hc := s.retention(upTo)
	width, cut, hours := int64(minuteMs), mc, false
	if floorTo(q.From, minuteMs) < mc {
		width, cut, hours = hourMs, hc, true
	}
	a := max(floorTo(q.From, width), cut)
	b := min(floorTo(q.To+width-1, width), upTo)
	out := &UtilizationReport{Feature: q.Feature, From: q.From, To: q.To, Capacity: fh.capAt(b - 1), Buckets: []UtilizationBucket{}}
	out.CollectedMs = h.collectedMs(a, b)
	byLevel := map[uint32]int64{}
	var busy int64
	top := out.Capacity
	for _, bk := range s.view(fh, hours, upTo) {
		if bk.StartMs < a || bk.StartMs >= b {
			continue
		}
		for _, l := range bk.Levels {
			byLevel[l.Seats] += l.Ms
			busy += l.Ms
			top = max(top, l.Seats)
		}
	}
	byLevel[0] = out.CollectedMs - busy
	for k := uint32(0); k <= top; k++ {
		ub := UtilizationBucket{Seats: k, Ms: byLevel[k]}
		if out.CollectedMs > 0 {
			ub.Share = float64(ub.Ms) / float64(out.CollectedMs)
		}
		out.Buckets = append(out.Buckets, ub)
	}
	return out, nil
}

// HistoryUsers is the seat-hours per user, host or group in the hours
// overlapping [From, To), of q.Feature or of every feature, live leases
// included up to the last committed now; sorted by hours (descending),
// then name.
func (f *FSM) HistoryUsers(q HistoryQuery) (*UsersReport, error) {
	switch q.By {
	case "user", "host", "group":
	default:
		return nil, fmt.Errorf("by %q: want user, host or group", q.By)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	if s.hist == nil {
		return nil, ErrNoHistory
	}
	h := s.hist
	upTo := s.lastNowMs
	_, hc := s.retention(upTo)
	a := max(floorTo(q.From, hourMs), hc)
	b := floorTo(q.To+hourMs-1, hourMs)
	sum := map[string]int64{}
	for k, ms := range h.usage { // summed: order does not show
		if k.kind == q.By && k.hour >= a && k.hour < b && (q.Feature == "" || k.feature == q.Feature) {
			sum[k.name] += ms
		}
	}
	for _, l := range s.leases { // summed: order does not show
		if q.Feature != "" && l.Feature != q.Feature {
			continue
		}
		var names []string
		for _, n := range s.usageNames(l) {
			if n[0] == q.By {
				names = append(names, n[1])
			}
		}
		h.leaseSpans(l, upTo, func(hour, ms int64) {
			if hour >= a && hour < b {
				for _, n := range names {
					sum[n] += ms
				}
			}
		})
	}
	out := &UsersReport{Feature: q.Feature, By: q.By, From: q.From, To: q.To, Rows: []UserRow{}}
	for _, name := range sortedKeys(sum) {
		out.Rows = append(out.Rows, UserRow{Name: name, Hours: float64(sum[name]) / hourMs})
	}
	slices.SortStableFunc(out.Rows, func(x, y UserRow) int { return cmp.Compare(y.Hours, x.Hours) })
	if q.Top > 0 && len(out.Rows) > q.Top {
		out.Rows = out.Rows[:q.Top]
	}
	return out, nil
}

// ComplianceLevel rates a peak against an entitlement: 1 + the number of
// thresholds the peak percentage exceeds; any time over capacity is at
// least level 3; seats used without any entitlement are level 5.
func ComplianceLevel(entitlement, peak uint32, overMs int64, levels [4]float64) (int, float64) {
	if entitlement == 0 {
		if peak > 0 {
			return 5, 0
		}
		return 1, 0
	}
	pct := 100 * float64(peak) / float64(entitlement)
	level := 1
	for _, t := range levels {
		if pct > t {
			level++
		}
	}
	if overMs > 0 && level < 3 {
		level = 3
	}
	return level, pct
}

// HistoryCompliance rates every licensed or tracked feature over the hours
// overlapping [From, To): entitlement (licensed seats at the end of the
// range), peak, time over capacity and a level.
func (f *FSM) HistoryCompliance(q HistoryQuery) (*ComplianceReport, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.s
	if s.hist == nil {
		return nil, ErrNoHistory
	}
	h := s.hist
	upTo := s.lastNowMs
	_, hc := s.retention(upTo)
	a := max(floorTo(q.From, hourMs), hc)
	b := min(floorTo(q.To+hourMs-1, hourMs), upTo+1)
	out := &ComplianceReport{From: q.From, To: q.To, Levels: q.Levels, Features: []ComplianceRow{}}
	for _, name := range sortedKeys(h.features) {
		if name == unknownFeature {
			continue
		}
		fh := h.features[name]
		row := ComplianceRow{Feature: name, Entitlement: fh.capAt(b - 1)}
		for _, bk := range s.view(fh, true, upTo) {
			if bk.StartMs >= a && bk.StartMs < b {
				row.Peak = max(row.Peak, bk.Peak)
				row.OverCapacityMs += bk.OverMs
			}
		}
		row.Level, row.PeakPercent = ComplianceLevel(row.Entitlement, row.Peak, row.OverCapacityMs, q.Levels)
		row.LevelName = LevelNames[row.Level]
		out.Features = append(out.Features, row)
	}
	return out, nil
}

// DenialTotal is the cluster-wide count of one feature's denials for one
// reason since the history started (collected time only).
type DenialTotal struct {
	Feature, Reason string
	Count           uint64
	LastMs          int64
}

// DenialTotals lists the cluster-wide denial counts, sorted by feature and
// reason, and when counting started (0: the history has not started).
func (f *FSM) DenialTotals() (sinceMs int64, out []DenialTotal) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := f.s.hist
	if h == nil {
		return 0, nil
	}
	for _, d := range h.toDenialList() {
		out = append(out, DenialTotal{Feature: d.Feature, Reason: d.Reason, Count: d.Count, LastMs: d.LastMs})
	}
	return h.startedMs, out
}

func (h *history) toDenialList() []*fsmpb.DenialTotal {
	out := make([]*fsmpb.DenialTotal, 0, len(h.denials))
	for _, d := range h.denials {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *fsmpb.DenialTotal) int {
		return cmp.Or(cmp.Compare(a.Feature, b.Feature), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}
