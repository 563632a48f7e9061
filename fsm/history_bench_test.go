package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

// yearOfHistory returns an FSM whose history holds nFeatures features with
// a bucket for every hour of a year (and, with minutes, every minute of
// the last 14 days): each bucket with a peak, seat time, two seat levels
// and a denial, as a busy feature has. 20 users per feature each have
// seat time in every hour.
func yearOfHistory(tb testing.TB, nFeatures int, minutes bool, users int) *FSM {
	h := formed(tb)
	h.apply(t0, startHistoryCmd())
	hs := h.f.s.hist
	end := floorTo(t0, hourMs) + 365*dayMs
	for i := range nFeatures {
		name := fmt.Sprintf("feature-%03d", i)
		fh := &featureHist{seats: 3, accounted: end, capacity: []*fsmpb.CapacityChange{{AtMs: t0, Seats: 10}}}
		bucket := func(start int64, width int64) *fsmpb.HistoryBucket {
			return &fsmpb.HistoryBucket{StartMs: start, Peak: 7, SeatMs: uint64(4 * width), OverMs: 0,
				Denials: []*fsmpb.ReasonCount{{Reason: "no_seat", Count: 2}},
				Levels:  []*fsmpb.LevelTime{{Seats: 3, Ms: width / 2}, {Seats: 7, Ms: width / 2}}}
		}
		for t := end - 365*dayMs; t < end; t += hourMs {
			fh.hours = append(fh.hours, bucket(t, hourMs))
		}
		if minutes {
			for t := end - 14*dayMs; t < end; t += minuteMs {
				fh.minutes = append(fh.minutes, bucket(t, minuteMs))
			}
		}
		hs.features[name] = fh
		for u := range users {
			for t := end - 365*dayMs; t < end; t += hourMs {
				hs.usage[usageKey{hour: t, feature: name, kind: "user", name: fmt.Sprint("user-", u)}] = 600_000
			}
		}
	}
	h.f.s.lastNowMs = end
	return h.f
}

// BenchmarkHistorySnapshot measures Snapshot + Persist and Restore of 100
// features × a year of hourly buckets (docs/performance.md).
func BenchmarkHistorySnapshot(b *testing.B) {
	for _, c := range []struct {
		name    string
		minutes bool
		users   int
	}{{"100features-year-hours", false, 0}, {"100features-year-hours+14d-minutes", true, 0}, {"100features-year-hours+5users", false, 5}} {
		b.Run(c.name, func(b *testing.B) {
			f := yearOfHistory(b, 100, c.minutes, c.users)
			data := f.MarshalSnapshot()
			b.ReportAllocs()
			b.ResetTimer()
			var restore time.Duration
			for range b.N {
				s, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Persist(discardSink{}); err != nil {
					b.Fatal(err)
				}
				s.Release()
				start := time.Now()
				if err := New().Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
					b.Fatal(err)
				}
				restore += time.Since(start)
			}
			b.ReportMetric(float64(len(data))/1e6, "MB")
			b.ReportMetric(float64(restore.Milliseconds())/float64(b.N), "restore-ms")
		})
	}
}

// BenchmarkHistoryReport measures a year of hourly usage of one feature and
// the compliance report over every feature, on the year state.
func BenchmarkHistoryReport(b *testing.B) {
	f := yearOfHistory(b, 100, false, 0)
	end := f.s.lastNowMs
	b.ResetTimer()
	for range b.N {
		if _, _, err := f.HistoryUsage(HistoryQuery{Feature: "feature-042", From: end - 365*dayMs, To: end, Step: "day"}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.HistoryCompliance(HistoryQuery{From: end - 365*dayMs, To: end, Levels: DefaultComplianceLevels}); err != nil {
			b.Fatal(err)
		}
	}
}
