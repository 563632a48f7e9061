package fsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Issue 15 point 3: 100,000 live leases (docs/performance.md). Run with
//   go test -run '^$' -bench 'Leases100k' -benchtime 5x ./fsm/

const scaleLeases = 100_000

// heldState returns a harness holding n live 30 s leases of one feature,
// granted in batches of 1,000 as the leader's group commit would, each with
// a lease secret like real grants; and the FSM heap they take, per lease.
func heldState(b *testing.B, n int) (*harness, float64) {
	h := formed(b)
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, uint32(n))))
	before := heapInUse()
	for i := 0; i < n; i += 1000 {
		ops := make([]*fsmpb.Op, min(1000, n-i))
		for j := range ops {
			op := grantTTLOp(fmt.Sprint("scale-", i+j), "cad", 1, 30*second)
			op.GetGrant().ClientId = fmt.Sprint("client-", (i+j)%1000)
			op.GetGrant().Secret = scaleSecret(i + j)
			ops[j] = op
		}
		h.apply(t0, batchCmd(ops...))
	}
	if got := len(h.f.Leases()); got != n {
		b.Fatalf("%d live leases, want %d", got, n)
	}
	return h, float64(heapInUse()-before) / float64(n)
}

// scaleSecret is the secret of the k-th lease heldState grants.
func scaleSecret(k int) []byte {
	return bytes.Repeat([]byte{byte(k), byte(k >> 8), byte(k >> 16), 1}, 4)
}

// processCPU is this process's user+system CPU time so far. On a shared,
// loaded machine wall time per op says little; CPU time per op
// (reported as cpu-ns/op by startCPU) is what compares across runs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPU resets the timer and returns a func, to call when the loop is
// done, that reports the CPU time per op as cpu-ns/op.
func startCPU(b *testing.B) func() {
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	return func() {
		used := processCPU() - start
		b.StopTimer()
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// BenchmarkSnapshotLeases100k: Snapshot plus Persist of 100,000 leases (the
// goal: taken and restored in under 1 s). Also reports the FSM heap per
// held lease (the goal: at most 1 KiB per lease on each member).
func BenchmarkSnapshotLeases100k(b *testing.B) {
	h, perLease := heldState(b, scaleLeases)
	done := startCPU(b)
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
	done()
	b.ReportMetric(float64(len(h.f.MarshalSnapshot())), "snapshot-bytes")
	b.ReportMetric(perLease, "heap-B/lease")
}

// BenchmarkRestoreLeases100k: Restore of a snapshot with 100,000 leases.
func BenchmarkRestoreLeases100k(b *testing.B) {
	h, _ := heldState(b, scaleLeases)
	data := h.f.MarshalSnapshot()
	done := startCPU(b)
	for range b.N {
		g := New()
		if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
	}
	done()
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil || len(g.Leases()) != scaleLeases {
		b.Fatalf("restore: %v, %d leases", err, len(g.Leases()))
	}
}

// BenchmarkRebaseLeases100k: the RebaseLeases entry a new leader commits,
// over 100,000 leases (part of the goal: renewals flowing again within
// 2.5 s of a leader's death).
func BenchmarkRebaseLeases100k(b *testing.B) {
	h, _ := heldState(b, scaleLeases)
	done := startCPU(b)
	for i := range b.N {
		r := h.apply(t0+int64(i+1)*second, rebaseCmd()).(*fsmpb.OpResult)
		if r.Code != fsmpb.Code_OK {
			b.Fatalf("rebase: %v %s", r.Code, r.Message)
		}
	}
	done()
}

// BenchmarkRenewBatchLeases100k: one log entry renewing 1,000 leases (one
// 10 s round of 100 client processes' renewals) next to 100,000 leases.
func BenchmarkRenewBatchLeases100k(b *testing.B) {
	h, _ := heldState(b, scaleLeases)
	ids := make([]uint64, 1000)
	secrets := make([][]byte, 1000)
	first := h.f.Leases()[0].Id
	done := startCPU(b)
	for i := range b.N {
		for j := range ids {
			k := (i*1000 + j) % scaleLeases
			ids[j], secrets[j] = first+uint64(k), scaleSecret(k)
		}
		op := renewOp(ids...)
		op.GetRenew().Secrets = secrets
		res := h.apply(t0+second, batchCmd(op)).(*fsmpb.BatchResult)
		for _, l := range res.Results[0].Leases {
			if l.Code != fsmpb.Code_OK {
				b.Fatalf("renew: %v %s", l.Code, l.Message)
			}
		}
	}
	done()
}
