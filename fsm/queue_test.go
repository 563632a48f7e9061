package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// queueOp is a checkout by user@host that may wait waitMs for a seat
// (scoped by client id, as every grant of this build).
func queueOp(req, user, host string, count uint32, waitMs int64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{
		RequestId: req, Feature: "cad", Count: count, User: user, Host: host,
		ClientId: "client-" + user, ViaMember: "member-a", TtlMs: 30 * second,
		QueueWaitMs: waitMs, Secret: []byte("secret-" + req),
	}}}
}

func plainOp(req, user string, count uint32) *fsmpb.Op {
	op := queueOp(req, user, "ws", count, 0)
	return op
}

func dequeueOp(req, user string) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Dequeue{Dequeue: &fsmpb.Dequeue{RequestId: req, ClientId: "client-" + user}}}
}

func releaseSecretOp(l *fsmpb.Lease) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{l.Id}, Secrets: [][]byte{l.Secret}}}}
}

// queueHarness is a formed cluster with a license of seats seats of cad.
func queueHarness(t *testing.T, seats uint32) *harness {
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, seats)))
	return h
}

func (h *harness) mustCode(now int64, op *fsmpb.Op, want fsmpb.Code) *fsmpb.OpResult {
	h.t.Helper()
	r := h.op(now, op)
	if r.Code != want {
		h.t.Fatalf("%v: got %v %q, want %v", op, r.Code, r.Message, want)
	}
	return r
}

// holder returns the user holding the lease granted to request req, or "".
func holder(f *FSM, req string) string {
	for _, l := range f.Leases() {
		if l.RequestId == req {
			return l.User
		}
	}
	return ""
}

func queueUsers(f *FSM) string {
	var out []string
	for _, q := range f.Queue() {
		out = append(out, fmt.Sprintf("%d:%s", q.Position, q.Entry.Grant.User))
	}
	return strings.Join(out, " ")
}

func TestQueueFIFOOrder(t *testing.T) {
	h := queueHarness(t, 1)
	first := h.mustCode(t0, plainOp("r0", "holder", 1), fsmpb.Code_OK).Lease
	// Without a queue flag a checkout is refused at once, and stays refused.
	h.mustCode(t0, plainOp("r-plain", "dan", 1), fsmpb.Code_NO_SEAT)
	r := h.mustCode(t0+1, queueOp("r1", "ann", "ws1", 1, 10*minute), fsmpb.Code_QUEUED)
	if r.QueuePosition != 1 || r.QueueLength != 1 || r.QueueDeadlineMs != t0+1+10*minute {
		t.Fatalf("first waiter: %v", r)
	}
	r = h.mustCode(t0+2, queueOp("r2", "bob", "ws2", 1, 10*minute), fsmpb.Code_QUEUED)
	if r.QueuePosition != 2 || r.QueueLength != 2 {
		t.Fatalf("second waiter: %v", r)
	}
	if got := queueUsers(h.f); got != "1:ann 2:bob" {
		t.Fatalf("queue %q", got)
	}
	// A retry finds its place and renews it.
	if r := h.mustCode(t0+3, queueOp("r2", "bob", "ws2", 1, 10*minute), fsmpb.Code_QUEUED); r.QueuePosition != 2 {
		t.Fatalf("retry of the second waiter: %v", r)
	}
	// The release grants the head in the same command.
	h.mustCode(t0+4, releaseSecretOp(first), fsmpb.Code_OK)
	if holder(h.f, "r1") != "ann" || holder(h.f, "r2") != "" {
		t.Fatalf("after release: leases %v", h.f.Leases())
	}
	if got := queueUsers(h.f); got != "1:bob" {
		t.Fatalf("queue %q", got)
	}
	// No seat is final for a plain checkout: its retry stays refused.
	h.mustCode(t0+4, plainOp("r-plain", "dan", 1), fsmpb.Code_NO_SEAT)
	// ann's retry gets her lease, with the secret of her first checkout.
	r = h.mustCode(t0+5, queueOp("r1", "ann", "ws1", 1, 10*minute), fsmpb.Code_OK)
	if !bytes.Equal(r.Lease.Secret, []byte("secret-r1")) || r.Lease.GrantedMs != t0+4 {
		t.Fatalf("ann's retry: %v", r.Lease)
	}
	// A newcomer without a queue is refused while bob waits; with one it
	// queues behind him.
	h.mustCode(t0+6, plainOp("r3", "cid", 1), fsmpb.Code_NO_SEAT)
	h.mustCode(t0+6, queueOp("r4", "eve", "ws", 1, 10*minute), fsmpb.Code_QUEUED)
	// Expiry frees the seat for bob, not eve.
	h.op(t0+20*second, queueOp("r2", "bob", "ws2", 1, 10*minute)) // waiters renew their place
	h.op(t0+20*second, queueOp("r4", "eve", "ws", 1, 10*minute))
	h.apply(t0+25*second, expireCmd())
	if holder(h.f, "r2") != "" {
		t.Fatalf("bob was granted before ann's lease expired: %v", h.f.Leases())
	}
	h.apply(t0+31*second, expireCmd())
	if holder(h.f, "r1") != "" || holder(h.f, "r2") != "bob" || holder(h.f, "r4") != "" {
		t.Fatalf("after ann's lease expired: %v", h.f.Leases())
	}
}

func TestQueueHoldsTheLine(t *testing.T) {
	h := queueHarness(t, 3)
	a := h.mustCode(t0, plainOp("a", "a", 1), fsmpb.Code_OK).Lease
	h.mustCode(t0, plainOp("b", "b", 1), fsmpb.Code_OK)
	// Head needs 3 seats, 1 is free: it waits, and holds the line.
	h.mustCode(t0+1, queueOp("big", "big", "ws", 3, hour), fsmpb.Code_QUEUED)
	r := h.mustCode(t0+2, plainOp("small", "small", 1), fsmpb.Code_NO_SEAT)
	if !strings.Contains(r.Message, "wait in its queue") {
		t.Fatalf("small: %q", r.Message)
	}
	h.mustCode(t0+2, queueOp("small2", "small2", "ws", 1, hour), fsmpb.Code_QUEUED)
	h.mustCode(t0+3, releaseSecretOp(a), fsmpb.Code_OK)
	if holder(h.f, "small2") != "" || queueUsers(h.f) != "1:big 2:small2" {
		t.Fatalf("the line was jumped: %v / %s", h.f.Leases(), queueUsers(h.f))
	}
	// More seats than licensed can never fit: refused at once.
	r = h.mustCode(t0+4, queueOp("huge", "huge", "ws", 4, hour), fsmpb.Code_NO_SEAT)
	if !strings.Contains(r.Message, "can never fit") {
		t.Fatalf("huge: %q", r.Message)
	}
}

func TestQueueTimeoutAndHeartbeat(t *testing.T) {
	h := queueHarness(t, 1)
	long := plainOp("r0", "holder", 1)
	long.GetGrant().TtlMs = hour
	h.mustCode(t0, long, fsmpb.Code_OK)
	h.mustCode(t0, queueOp("short", "ann", "ws", 1, 20*second), fsmpb.Code_QUEUED)
	h.mustCode(t0, queueOp("gone", "bob", "ws", 1, hour), fsmpb.Code_QUEUED)
	h.mustCode(t0, queueOp("alive", "cid", "ws", 1, hour), fsmpb.Code_QUEUED)
	if h.f.HasExpired(t0 + 20*second) {
		t.Fatal("HasExpired before any wait or TTL ended")
	}
	h.op(t0+20*second, queueOp("alive", "cid", "ws", 1, hour))
	h.op(t0+20*second, queueOp("short", "ann", "ws", 1, hour))
	if !h.f.HasExpired(t0 + 21*second) {
		t.Fatal("HasExpired misses a wait that ended")
	}
	h.apply(t0+21*second, expireCmd())
	if got := queueUsers(h.f); got != "1:bob 2:cid" {
		t.Fatalf("queue %q", got)
	}
	r := h.mustCode(t0+22*second, queueOp("short", "ann", "ws", 1, hour), fsmpb.Code_QUEUE_TIMEOUT)
	if !strings.Contains(r.Message, "waited 21s") || !strings.Contains(r.Message, "no seat") {
		t.Fatalf("timeout message %q", r.Message)
	}
	h.op(t0+40*second, queueOp("alive", "cid", "ws", 1, hour))
	h.apply(t0+41*second, expireCmd()) // bob has not renewed for 41 s
	if got := queueUsers(h.f); got != "1:cid" {
		t.Fatalf("queue %q", got)
	}
	r = h.mustCode(t0+42*second, queueOp("gone", "bob", "ws", 1, hour), fsmpb.Code_QUEUE_LEFT)
	if !strings.Contains(r.Message, "stopped renewing") {
		t.Fatalf("left message %q", r.Message)
	}
}

func TestQueueDequeue(t *testing.T) {
	h := queueHarness(t, 1)
	l := h.mustCode(t0, plainOp("r0", "holder", 1), fsmpb.Code_OK).Lease
	h.mustCode(t0, queueOp("r1", "ann", "ws", 1, hour), fsmpb.Code_QUEUED)
	h.mustCode(t0, queueOp("r2", "bob", "ws", 1, hour), fsmpb.Code_QUEUED)
	// Another client cannot cancel ann's wait with her request id.
	h.mustCode(t0+1, &fsmpb.Op{Op: &fsmpb.Op_Dequeue{Dequeue: &fsmpb.Dequeue{RequestId: "r1", ClientId: "client-bob"}}}, fsmpb.Code_NOT_FOUND)
	h.mustCode(t0+1, dequeueOp("r1", "ann"), fsmpb.Code_OK)
	h.mustCode(t0+2, queueOp("r1", "ann", "ws", 1, hour), fsmpb.Code_QUEUE_LEFT) // final
	h.mustCode(t0+3, releaseSecretOp(l), fsmpb.Code_OK)
	if holder(h.f, "r2") != "bob" || holder(h.f, "r1") != "" {
		t.Fatalf("leases %v", h.f.Leases())
	}
	r := h.mustCode(t0+4, dequeueOp("r2", "bob"), fsmpb.Code_NOT_FOUND)
	if !strings.Contains(r.Message, "was granted lease") {
		t.Fatalf("dequeue of a granted request: %q", r.Message)
	}
}

func TestQueueRulesAndReservations(t *testing.T) {
	h := queueHarness(t, 2)
	h.apply(t0, rulesCmd(nil,
		rule("EXCLUDE cad USER mallory", "exclude", "user", "mallory", 0),
		rule("RESERVE 1 cad USER boss", "reserve", "user", "boss", 1),
		rule("MAX 1 cad USER greedy", "max", "user", "greedy", 1)))
	// EXCLUDE refuses at once, not queued; so does more than MAX allows.
	h.mustCode(t0, queueOp("m", "mallory", "ws", 1, hour), fsmpb.Code_DENIED_BY_RULE)
	h.mustCode(t0, queueOp("g2", "greedy", "ws", 2, hour), fsmpb.Code_DENIED_BY_RULE)
	if len(h.f.Queue()) != 0 {
		t.Fatalf("refused requests queued: %s", queueUsers(h.f))
	}
	// One free seat for everyone, one reserved for boss.
	x := h.mustCode(t0, plainOp("x", "x", 1), fsmpb.Code_OK).Lease
	// The reserved seat is not ann's: she waits, without holding the line.
	h.mustCode(t0+1, queueOp("ann", "ann", "ws", 1, hour), fsmpb.Code_QUEUED)
	// boss takes his reserved seat although ann waits.
	b := h.mustCode(t0+2, plainOp("boss", "boss", 1), fsmpb.Code_OK).Lease
	h.mustCode(t0+3, queueOp("boss2", "boss", "ws", 1, hour), fsmpb.Code_QUEUED) // behind ann
	// boss releases: the reservation holds the seat for boss, so it goes
	// to boss2 (the waiter the reservation serves), not to ann.
	h.mustCode(t0+4, releaseSecretOp(b), fsmpb.Code_OK)
	if holder(h.f, "boss2") != "boss" || holder(h.f, "ann") != "" {
		t.Fatalf("reserved seat given to %v", h.f.Leases())
	}
	// x releases an ordinary seat: ann gets it.
	h.mustCode(t0+5, releaseSecretOp(x), fsmpb.Code_OK)
	if holder(h.f, "ann") != "ann" {
		t.Fatalf("ann not granted: %v / %s", h.f.Leases(), queueUsers(h.f))
	}
	// A waiter that a new rule excludes leaves the queue, told why.
	h.mustCode(t0+6, queueOp("z", "zed", "ws", 1, hour), fsmpb.Code_QUEUED)
	h.apply(t0+7, rulesCmd(nil, rule("EXCLUDE cad USER zed", "exclude", "user", "zed", 0)))
	if len(h.f.Queue()) != 0 {
		t.Fatalf("excluded waiter stayed: %s", queueUsers(h.f))
	}
	r := h.mustCode(t0+8, queueOp("z", "zed", "ws", 1, hour), fsmpb.Code_QUEUE_LEFT)
	if !strings.Contains(r.Message, "EXCLUDE cad USER zed") {
		t.Fatalf("zed: %q", r.Message)
	}
}

func TestQueueServedByLicenseEnroll(t *testing.T) {
	h := queueHarness(t, 1)
	h.mustCode(t0, plainOp("r0", "holder", 1), fsmpb.Code_OK)
	h.mustCode(t0, queueOp("r1", "ann", "ws", 1, hour), fsmpb.Code_QUEUED)
	h.mustEnroll(t0+1, lic("L2", t0-day, t0+365*day, feat("cad", 1, 1)))
	if holder(h.f, "r1") != "ann" {
		t.Fatalf("enrolling a license did not serve the queue: %v", h.f.Leases())
	}
}

func TestQueueSnapshotRebaseAndReplay(t *testing.T) {
	h := queueHarness(t, 1)
	l := h.mustCode(t0, plainOp("r0", "holder", 1), fsmpb.Code_OK).Lease
	h.mustCode(t0, queueOp("r1", "ann", "ws", 1, 10*minute), fsmpb.Code_QUEUED)
	h.mustCode(t0, queueOp("r2", "bob", "ws", 1, 10*minute), fsmpb.Code_QUEUED)
	snapBytes := h.f.MarshalSnapshot()
	g := roundTrip(t, h.f)
	if queueUsers(g) != "1:ann 2:bob" {
		t.Fatalf("restored queue %q", queueUsers(g))
	}
	if v := snapshotVersion(t, snapBytes); v != newestSnapshotFormat {
		t.Fatalf("snapshot with a queue has format %d", v)
	}
	// A new leader whose clock is an hour ahead: the gap does not count
	// against the wait, and every waiter gets a full TTL.
	h2 := &harness{t: t, f: g, index: h.index}
	h2.apply(t0+hour, &fsmpb.Command{Cmd: &fsmpb.Command_RebaseLeases{RebaseLeases: &fsmpb.RebaseLeases{MemoryFromMs: t0}}})
	q := g.Queue()
	if q[0].Entry.DeadlineMs != t0+hour+10*minute || q[0].Entry.ExpiresMs != t0+hour+30*second || q[0].Entry.EnqueuedMs != t0+hour {
		t.Fatalf("rebased waiter %v", q[0].Entry)
	}
	h2.apply(t0+hour+1, expireCmd())
	if len(g.Queue()) != 2 {
		t.Fatalf("rebased waiters expired: %s", queueUsers(g))
	}
	h2.mustCode(t0+hour+2, releaseSecretOp(l), fsmpb.Code_OK)
	if holder(g, "r1") != "ann" {
		t.Fatalf("after failover release: %v", g.Leases())
	}
	// Replaying the same log on a fresh FSM gives the same bytes.
	h.mustCode(t0+5, releaseSecretOp(l), fsmpb.Code_OK)
	h3 := queueHarness(t, 1)
	h3.mustCode(t0, plainOp("r0", "holder", 1), fsmpb.Code_OK)
	h3.mustCode(t0, queueOp("r1", "ann", "ws", 1, 10*minute), fsmpb.Code_QUEUED)
	h3.mustCode(t0, queueOp("r2", "bob", "ws", 1, 10*minute), fsmpb.Code_QUEUED)
	h3.mustCode(t0+5, releaseSecretOp(l), fsmpb.Code_OK)
	if !bytes.Equal(h.f.MarshalSnapshot(), h3.f.MarshalSnapshot()) {
		t.Fatal("replay of the same log differs")
	}
	if v := snapshotVersion(t, (&FSM{s: newState()}).MarshalSnapshot()); v != snapshotFormat {
		t.Fatalf("snapshot without a queue has format %d", v)
	}
}

func TestQueueNeedsFormat4(t *testing.T) {
	if f, op := OpsFormat(queueOp("r", "u", "h", 1, hour)); f != 4 || op != "batch.grant.queue_wait_ms" {
		t.Fatalf("queued grant: format %d %s", f, op)
	}
	if f, _ := OpsFormat(plainOp("r", "u", 1)); f != 1 {
		t.Fatalf("plain grant: format %d", f)
	}
	if f, _ := OpsFormat(dequeueOp("r", "u")); f != 4 {
		t.Fatalf("dequeue: format %d", f)
	}
	h := queueHarness(t, 1)
	h.f.SetMaxFormat(3)
	h.apply(t0, batchCmd(queueOp("r", "u", "h", 1, hour)))
	if h.f.Halted() == nil {
		t.Fatal("a format-3 FSM applied a queued checkout")
	}
}

func TestQueueBorrowCannotWait(t *testing.T) {
	h := queueHarness(t, 1)
	g := queueOp("b", "ann", "ws", 1, hour).GetGrant()
	r := h.op(t0, &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{Grant: g, DurationMs: hour}}})
	if r.Code == fsmpb.Code_QUEUED || len(h.f.Queue()) != 0 {
		t.Fatalf("borrow queued: %v", r)
	}
}

func snapshotVersion(t *testing.T, b []byte) uint32 {
	t.Helper()
	snap := &fsmpb.Snapshot{}
	if err := proto.Unmarshal(b, snap); err != nil {
		t.Fatal(err)
	}
	return snap.FormatVersion
}

// BenchmarkQueueHandOver measures a release that hands its seat to the
// head of a 1000-waiter queue in the same entry (release, serve, grant):
// the cost a queue adds to the write path.
func BenchmarkQueueHandOver(b *testing.B) {
	h := formed(b)
	h.mustEnroll(t0, lic("L1", t0-day, t0+365*day, feat("cad", 1, 1)))
	cur := h.op(t0, plainOp("h", "holder", 1)).Lease
	next := 0
	enqueue := func() {
		h.op(t0, queueOp(fmt.Sprint("w", next), fmt.Sprint("w", next), "ws", 1, 7*day))
		next++
	}
	for range 1000 {
		enqueue()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := h.op(t0, releaseSecretOp(cur))
		b.StopTimer()
		if r.Leases[0].Code != fsmpb.Code_OK {
			b.Fatal(r)
		}
		head := fmt.Sprint("w", i)
		rec, _ := h.f.s.requests.get(requestKey{client: "client-" + head, request: head})
		cur = h.f.s.leases[rec.LeaseId].toProto()
		enqueue()
		b.StartTimer()
	}
}
