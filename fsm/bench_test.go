package fsm

import (
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

// benchState returns a harness with a few licenses and about 1000 live
// leases spread over versions, with the usage history on (as in a cluster
// of this build).
func benchState(b *testing.B) *harness {
	return benchStateWith(b, 0)
}

// benchStateWith is benchState plus extra licenses of 10 entries each,
// naming 50 other features: a site's license set, which every grant's
// capacity and package lookups used to walk.
func benchStateWith(b *testing.B, extra int) *harness {
	h := formed(b)
	h.apply(t0, startHistoryCmd())
	for i := range extra {
		var fs []*fsmpb.Feature
		for j := range 10 {
			fs = append(fs, feat(fmt.Sprint("g", (i*10+j)%50), 1, 10))
		}
		h.mustEnroll(t0, lic(fmt.Sprint("E", i), t0-day, t0+365*day, fs...))
	}
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 5, 100_000), feat("cad", 3, 1000), feat("sim", 1, 500)))
	h.mustEnroll(t0, lic("L2", t0-day, t0+365*day, feat("cad", 7, 100), feat("viz", 2, 50)))
	for i := range 10 {
		h.mustEnroll(t0, lic(fmt.Sprint("X", i), t0-day, t0+365*day, feat(fmt.Sprint("f", i), 1, 10)))
	}
	for i := 0; i < 1000; i += 100 {
		ops := make([]*fsmpb.Op, 100)
		for j := range ops {
			ops[j] = grantOp(fmt.Sprint("base-", i+j), "cad", uint32((i+j)%6), 1)
		}
		h.apply(t0, batchCmd(ops...))
	}
	if n := len(h.f.Leases()); n != 1000 {
		b.Fatalf("%d live leases", n)
	}
	return h
}

// BenchmarkApplyBatchGrantRelease measures one 512-grant batch followed by
// one 512-release batch, next to ~1000 live leases. Decoding is included:
// it is part of applying a log entry.
func BenchmarkApplyBatchGrantRelease(b *testing.B) {
	benchApplyBatch(b, benchState(b))
}

// BenchmarkApplyBatchGrantReleaseSite is the same next to 300 more
// licenses (3,000 entries).
func BenchmarkApplyBatchGrantReleaseSite(b *testing.B) {
	benchApplyBatch(b, benchStateWith(b, 300))
}

func benchApplyBatch(b *testing.B, h *harness) {
	const n = 512
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		now := t0 + int64(i)*second
		grants := make([]*fsmpb.Op, n)
		ids := make([]uint64, n)
		first := h.f.s.nextLeaseID
		for j := range grants {
			grants[j] = grantOp(fmt.Sprint("bench-", i, "-", j), "cad", uint32(j%6), 1)
			ids[j] = first + uint64(j)
		}
		grantCmd, releaseCmd := batchCmd(grants...), batchCmd(releaseOp(ids...))
		grantCmd.NowMs, releaseCmd.NowMs = now, now
		logs := []*raft.Log{commandLog(b, h.index+1, grantCmd), commandLog(b, h.index+2, releaseCmd)}
		h.index += 2
		b.StartTimer()

		res := h.f.ApplyBatch(logs)

		b.StopTimer()
		for _, r := range res[0].(*fsmpb.BatchResult).Results {
			if r.Code != fsmpb.Code_OK {
				b.Fatalf("grant: %v %s", r.Code, r.Message)
			}
		}
		for _, r := range res[1].(*fsmpb.BatchResult).Results[0].Leases {
			if r.Code != fsmpb.Code_OK {
				b.Fatalf("release: %v %s", r.Code, r.Message)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*n), "ns/op-in-batch")
}

// BenchmarkSnapshot measures Snapshot plus Persist of ~1000 leases.
func BenchmarkSnapshot(b *testing.B) {
	h := benchState(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s, err := h.f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Persist(discardSink{}); err != nil {
			b.Fatal(err)
		}
		s.Release()
	}
	b.ReportMetric(float64(len(h.f.MarshalSnapshot())), "bytes")
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return io.Discard.Write(p) }
func (discardSink) Close() error                { return nil }
func (discardSink) Cancel() error               { return nil }
func (discardSink) ID() string                  { return "discard" }
