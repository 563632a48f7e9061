package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/triadlm/triad/proto/fsmpb"
)

func traceCmd(on bool, feature, serial string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetTrace{SetTrace: &fsmpb.SetTrace{On: on, Feature: feature, Serial: serial}}}
}

func traceOffCmd() *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SetTrace{SetTrace: &fsmpb.SetTrace{AllOff: true}}}
}

// eventLine is an event without its index, in a compact comparable form.
func eventLine(e LeaseEvent) string {
	return fmt.Sprintf("%s %s v%d %s@%s lease=%d x%d %q traced=%v licensed=%v borrowed=%v",
		e.Event, e.Feature, e.Version, e.User, e.Host, e.LeaseID, e.Count, e.Reason, e.Traced, e.Licensed, e.Borrowed)
}

// TestTraceSettings: switching traces on and off per feature and license,
// the refusals, and the settings surviving a snapshot.
func TestTraceSettings(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 2), feat("sim", 1, 1)))
	steps := []struct {
		cmd      *fsmpb.Command
		code     fsmpb.Code
		msg      string
		features string
		serials  string
	}{
		{traceCmd(true, "cad", ""), fsmpb.Code_OK, "tracing feature cad", "[cad]", "[]"},
		{traceCmd(true, "cad", ""), fsmpb.Code_OK, "already traced", "[cad]", "[]"},
		{traceCmd(true, "anything", ""), fsmpb.Code_OK, "tracing feature anything", "[anything cad]", "[]"},
		{traceCmd(true, "", "L1"), fsmpb.Code_OK, "tracing license L1", "[anything cad]", "[L1]"},
		{traceCmd(true, "", "NOPE"), fsmpb.Code_NOT_FOUND, "no license NOPE is enrolled", "[anything cad]", "[L1]"},
		{traceCmd(true, "cad", "L1"), fsmpb.Code_INVALID_ARGUMENT, "exactly one", "[anything cad]", "[L1]"},
		{traceCmd(true, "", ""), fsmpb.Code_INVALID_ARGUMENT, "exactly one", "[anything cad]", "[L1]"},
		{traceCmd(true, strings.Repeat("x", 257), ""), fsmpb.Code_INVALID_ARGUMENT, "at most 256", "[anything cad]", "[L1]"},
		{traceCmd(false, "anything", ""), fsmpb.Code_OK, "stopped tracing feature anything", "[cad]", "[L1]"},
		{traceCmd(false, "anything", ""), fsmpb.Code_OK, "was not traced", "[cad]", "[L1]"},
	}
	for i, st := range steps {
		r := h.apply(t0+int64(i)*second, st.cmd).(*fsmpb.OpResult)
		if r.Code != st.code || !strings.Contains(r.Message, st.msg) {
			t.Errorf("step %d: %v %q, want %v containing %q", i, r.Code, r.Message, st.code, st.msg)
		}
		f, s := h.f.Trace()
		if got := fmt.Sprint(f); got != st.features {
			t.Errorf("step %d: features %s, want %s", i, got, st.features)
		}
		if got := fmt.Sprint(s); got != st.serials {
			t.Errorf("step %d: serials %s, want %s", i, got, st.serials)
		}
	}
	if v := h.f.s.toSnapshot().FormatVersion; v != 3 {
		t.Errorf("a snapshot with trace settings is format %d, want 3 (an older build must not drop them)", v)
	}
	g := roundTrip(t, h.f)
	if f, s := g.Trace(); fmt.Sprint(f, s) != "[cad] [L1]" {
		t.Errorf("restored trace %v %v, want [cad] [L1]", f, s)
	}
	if r := h.apply(t0+hour, &fsmpb.Command{Cmd: &fsmpb.Command_SetTrace{SetTrace: &fsmpb.SetTrace{AllOff: true, On: true}}}).(*fsmpb.OpResult); r.Code != fsmpb.Code_INVALID_ARGUMENT {
		t.Errorf("all_off with on: %v %q, want INVALID_ARGUMENT", r.Code, r.Message)
	}
	if r := h.apply(t0+hour, traceOffCmd()).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		t.Errorf("all off: %v %q", r.Code, r.Message)
	}
	if f, s := h.f.Trace(); len(f)+len(s) != 0 {
		t.Errorf("after all off: %v %v", f, s)
	}
	// Nothing traced: the snapshot has no trace field (old bytes kept).
	if snap := h.f.s.toSnapshot(); snap.Trace != nil || snap.FormatVersion != 2 {
		t.Errorf("snapshot holds %v (format %d) with nothing traced, want no trace and format 2", snap.Trace, snap.FormatVersion)
	}
	// The number of traces is bounded.
	for i := 0; i < MaxTraces; i++ {
		if r := h.apply(t0+2*hour, traceCmd(true, fmt.Sprintf("f%03d", i), "")).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
			t.Fatalf("trace %d: %v %q", i, r.Code, r.Message)
		}
	}
	if r := h.apply(t0+2*hour, traceCmd(true, "one-more", "")).(*fsmpb.OpResult); r.Code != fsmpb.Code_INVALID_ARGUMENT || !strings.Contains(r.Message, "switch one off") {
		t.Errorf("trace %d: %v %q, want INVALID_ARGUMENT", MaxTraces+1, r.Code, r.Message)
	}
	if fmt, _ := FormatOf(traceCmd(true, "cad", "")); fmt != 4 {
		t.Errorf("set_trace is format %d, want 4", fmt)
	}
}

// TestLeaseEvents: the observer hears every checkout, refusal, release,
// force-release and expiry in log order, with the trace flag set for the
// traced feature and for the features of a traced license, on a restored
// FSM too; and the same log gives the same events on two FSMs.
func TestLeaseEvents(t *testing.T) {
	run := func(h *harness) []string {
		var got []string
		h.f.SetLeaseObserver(func(evs []LeaseEvent) {
			for _, e := range evs {
				got = append(got, fmt.Sprintf("%d %s", e.Index, eventLine(e)))
			}
		})
		h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 2)))
		h.mustEnroll(t0, lic("L2", t0-day, t0+365*day, feat("sim", 1, 1), feat("viz", 1, 1)))
		h.apply(t0, traceCmd(true, "cad", ""))
		g := func(req, feature string, count uint32) *fsmpb.Op {
			op := grantOp(req, feature, 1, count)
			op.GetGrant().User, op.GetGrant().Host = "alice", "ws1"
			return op
		}
		a := h.op(t0+1*second, g("r1", "cad", 2)).GetLease()
		h.op(t0+2*second, g("r2", "cad", 1))    // no seat
		h.op(t0+3*second, g("r3", "nosuch", 1)) // unknown feature
		h.op(t0+4*second, releaseOp(a.GetId())) // release
		h.apply(t0+5*second, traceCmd(true, "", "L2"))
		v := h.op(t0+6*second, g("r4", "viz", 1)).GetLease()
		s := h.op(t0+6*second, g("r5", "sim", 1)).GetLease()
		h.op(t0+7*second, &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: s.GetId(), SessionId: h.liveSession(t0 + 7*second)}}})
		h.apply(t0+5*minute, expireCmd()) // viz expires (30 s TTL)
		h.apply(t0+6*minute, traceOffCmd())
		h.op(t0+7*minute, g("r6", "cad", 1))
		_ = v
		return got
	}
	got := run(formed(t))
	want := []string{
		"checkout cad v1 alice@ws1 lease=1 x2 \"\" traced=true licensed=false borrowed=false",
		"denial cad v1 alice@ws1 lease=0 x1 \"no_seat\" traced=true licensed=true borrowed=false",
		"denial nosuch v1 alice@ws1 lease=0 x1 \"unknown_feature\" traced=false licensed=false borrowed=false",
		"release cad v1 alice@ws1 lease=1 x2 \"released\" traced=true licensed=false borrowed=false",
		"checkout viz v1 alice@ws1 lease=2 x1 \"\" traced=true licensed=false borrowed=false",
		"checkout sim v1 alice@ws1 lease=3 x1 \"\" traced=true licensed=false borrowed=false",
		"release sim v1 alice@ws1 lease=3 x1 \"force-released\" traced=true licensed=false borrowed=false",
		"expiry viz v1 alice@ws1 lease=2 x1 \"expired\" traced=true licensed=false borrowed=false",
		"checkout cad v1 alice@ws1 lease=4 x1 \"\" traced=false licensed=false borrowed=false",
	}
	var lines []string
	var indexes []int
	for _, g := range got {
		var idx int
		fmt.Sscanf(g, "%d", &idx)
		indexes = append(indexes, idx)
		_, line, _ := strings.Cut(g, " ")
		lines = append(lines, line)
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if !slices.IsSorted(indexes) || slices.Contains(indexes, 0) {
		t.Errorf("event indexes %v are not the log order", indexes)
	}
	if again := run(formed(t)); !slices.Equal(again, got) {
		t.Errorf("the same log gave other events:\n%v\n%v", again, got)
	}
}

// TestLeaseEventsWithoutObserver: with no observer, Apply records nothing.
func TestLeaseEventsWithoutObserver(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 2)))
	h.apply(t0, traceCmd(true, "cad", ""))
	h.mustGrant(t0+second, "r1", "cad", 1, 1)
	if len(h.f.s.events) != 0 || cap(h.f.s.events) != 0 {
		t.Errorf("%d events kept (cap %d) with no observer", len(h.f.s.events), cap(h.f.s.events))
	}
}

// BenchmarkApplyBatchGrantReleaseTraced is BenchmarkApplyBatchGrantRelease
// with a lease observer listening (as on every member) and the feature
// traced: the cost of reporting lease events.
func BenchmarkApplyBatchGrantReleaseTraced(b *testing.B) {
	h := benchState(b)
	h.apply(t0, traceCmd(true, "cad", ""))
	seen := 0
	h.f.SetLeaseObserver(func(evs []LeaseEvent) {
		for _, e := range evs {
			if e.Traced {
				seen++
			}
		}
	})
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
		h.f.ApplyBatch(logs)
	}
	b.StopTimer()
	if seen != b.N*2*n {
		b.Fatalf("%d traced events, want %d", seen, b.N*2*n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*n), "ns/op-in-batch")
}

// The event buffer is reused between entries, but one left large by a
// burst (thousands of leases ending in one entry) is let go once its
// events are delivered: every garbage collection would scan it.
func TestLeaseEventBufferLetGoAfterBurst(t *testing.T) {
	h := formed(t)
	delivered := 0
	h.f.SetLeaseObserver(func(evs []LeaseEvent) { delivered += len(evs) })
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 5000)))
	small := make([]*fsmpb.Op, 10)
	for i := range small {
		small[i] = grantOp(fmt.Sprint("s", i), "cad", 1, 1)
	}
	h.apply(t0+second, batchCmd(small...))
	if delivered != 10 || h.f.s.events == nil || len(h.f.s.events) != 0 {
		t.Fatalf("after 10 checkouts: %d events delivered, buffer %d/%d; want 10 and an empty kept buffer", delivered, len(h.f.s.events), cap(h.f.s.events))
	}
	burst := make([]*fsmpb.Op, maxKeptEvents+1)
	for i := range burst {
		burst[i] = grantOp(fmt.Sprint("b", i), "cad", 1, 1)
	}
	h.apply(t0+2*second, batchCmd(burst...))
	if delivered != 10+len(burst) || h.f.s.events != nil {
		t.Fatalf("after %d checkouts in one entry: %d events delivered, buffer cap %d; want all delivered and the buffer let go",
			len(burst), delivered-10, cap(h.f.s.events))
	}
	h.apply(t0+3*second, batchCmd(grantOp("after", "cad", 1, 1)))
	if delivered != 11+len(burst) {
		t.Fatalf("the next entry's event was not delivered (%d in all)", delivered)
	}
}
