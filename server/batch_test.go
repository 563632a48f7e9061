package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

const batchWait = 5 * time.Second

func grantOp(id string) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{RequestId: id}}}
}

// fakeFlush records the groups it is given and answers each op with a
// result whose Message is the op's request id. While gate is open (not
// closed) every flush waits on it.
type fakeFlush struct {
	mu      sync.Mutex
	groups  [][]string
	gate    chan struct{}
	gateOne sync.Once
	entered chan int // receives the call number (1-based) as each flush starts
	answer  func(call int, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error)
}

func newFakeFlush(t *testing.T, blocked bool) *fakeFlush {
	f := &fakeFlush{gate: make(chan struct{}), entered: make(chan int, 1024)}
	if !blocked {
		f.open()
	}
	t.Cleanup(f.open) // never leave a flush goroutine stuck
	return f
}

func (f *fakeFlush) open() { f.gateOne.Do(func() { close(f.gate) }) }

func (f *fakeFlush) flush(ops []*fsmpb.Op, _ []time.Time) ([]*fsmpb.OpResult, error) {
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.GetGrant().GetRequestId()
	}
	f.mu.Lock()
	f.groups = append(f.groups, ids)
	call := len(f.groups)
	answer := f.answer
	f.mu.Unlock()
	f.entered <- call
	<-f.gate
	if answer != nil {
		return answer(call, ops)
	}
	return echo(ops), nil
}

func echo(ops []*fsmpb.Op) []*fsmpb.OpResult {
	out := make([]*fsmpb.OpResult, len(ops))
	for i, op := range ops {
		out[i] = &fsmpb.OpResult{Message: op.GetGrant().GetRequestId()}
	}
	return out
}

func (f *fakeFlush) snapshot() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]string, len(f.groups))
	copy(out, f.groups)
	return out
}

func (f *fakeFlush) waitEntered(t *testing.T, call int) {
	t.Helper()
	select {
	case got := <-f.entered:
		if got != call {
			t.Fatalf("flush call %d started, want %d", got, call)
		}
	case <-time.After(batchWait):
		t.Fatalf("flush call %d did not start", call)
	}
}

// startBatcher runs b until the test ends.
func startBatcher(t *testing.T, b *batcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(batchWait):
			t.Errorf("batcher.run did not return after its context ended")
		}
	})
}

// waitQueued polls until n submissions wait in the batcher's input queue.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(batchWait)
	for len(b.in) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d submissions queued, want %d", len(b.in), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type outcome struct {
	ids []string
	res []*fsmpb.OpResult
	err error
}

// submitAsync submits ops with the given ids in a goroutine.
func submitAsync(ctx context.Context, b *batcher, ids ...string) <-chan outcome {
	ch := make(chan outcome, 1)
	ops := make([]*fsmpb.Op, len(ids))
	for i, id := range ids {
		ops[i] = grantOp(id)
	}
	go func() {
		res, err := b.submit(ctx, ops)
		ch <- outcome{ids: ids, res: res, err: err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(batchWait):
		t.Fatalf("submit did not return")
		return outcome{}
	}
}

func checkEcho(t *testing.T, o outcome) {
	t.Helper()
	if o.err != nil {
		t.Fatalf("submit %v: %v", o.ids, o.err)
	}
	if len(o.res) != len(o.ids) {
		t.Fatalf("submit %v got %d results, want %d", o.ids, len(o.res), len(o.ids))
	}
	for i, id := range o.ids {
		if got := o.res[i].GetMessage(); got != id {
			t.Errorf("submit %v: result %d is for %q, want %q", o.ids, i, got, id)
		}
	}
}

func TestBatcherResultsInOrder(t *testing.T) {
	f := newFakeFlush(t, false)
	b := newBatcher(64, forwardPipeline, f.flush) // a follower's forwarding queue
	startBatcher(t, b)

	res, err := b.submit(context.Background(), []*fsmpb.Op{grantOp("r1"), grantOp("r2"), grantOp("r3")})
	checkEcho(t, outcome{ids: []string{"r1", "r2", "r3"}, res: res, err: err})

	// Many concurrent submitters each get their own results, in order.
	var chans []<-chan outcome
	for i := 0; i < 50; i++ {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("s%d-a", i), fmt.Sprintf("s%d-b", i)))
	}
	for _, ch := range chans {
		checkEcho(t, await(t, ch))
	}
}

func TestBatcherGroupsWaitingSubmissions(t *testing.T) {
	f := newFakeFlush(t, true)
	b := newBatcher(64, 1, f.flush)
	startBatcher(t, b)

	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1) // the only pipeline slot is now busy

	const n = 20
	var chans []<-chan outcome
	for i := 0; i < n; i++ {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("w%d", i)))
	}
	// run holds one of them while waiting for the slot; the rest queue.
	waitQueued(t, b, n-1)
	f.open()

	checkEcho(t, await(t, first))
	for _, ch := range chans {
		checkEcho(t, await(t, ch))
	}
	groups := f.snapshot()
	total := 0
	for _, g := range groups {
		total += len(g)
	}
	if total != n+1 {
		t.Errorf("flushed %d ops in total, want %d: %v", total, n+1, groups)
	}
	if len(groups) >= n+1 {
		t.Errorf("%d flushes for %d submissions: waiting submissions were not grouped", len(groups), n+1)
	}
	// Everything that waited behind the first flush goes in one group.
	if len(groups) != 2 || len(groups[1]) != n {
		t.Errorf("groups = %v, want [first] then all %d waiting ops together", groups, n)
	}
}

func TestBatcherMaxOpsBoundsGroup(t *testing.T) {
	f := newFakeFlush(t, true)
	const maxOps = 4
	b := newBatcher(maxOps, 1, f.flush)
	startBatcher(t, b)

	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1)
	const n = 10
	var chans []<-chan outcome
	for i := 0; i < n; i++ {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("w%d", i)))
	}
	waitQueued(t, b, n-1)
	f.open()

	checkEcho(t, await(t, first))
	for _, ch := range chans {
		checkEcho(t, await(t, ch))
	}
	groups := f.snapshot()
	total := 0
	for _, g := range groups {
		total += len(g)
		if len(g) > maxOps {
			t.Errorf("group of %d ops exceeds maxOps %d: %v", len(g), maxOps, g)
		}
	}
	if total != n+1 {
		t.Errorf("flushed %d ops, want %d", total, n+1)
	}
	// 10 waiting single ops in groups of at most 4: at least 3 groups, and
	// the first of them full.
	if len(groups) < 1+3 || len(groups[1]) != maxOps {
		t.Errorf("groups = %v, want full groups of %d after the first", groups, maxOps)
	}
}

func TestBatcherFlushErrorReachesWholeGroup(t *testing.T) {
	f := newFakeFlush(t, true)
	boom := errors.New("disk on fire")
	f.answer = func(call int, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
		if call == 2 {
			return nil, boom
		}
		return echo(ops), nil
	}
	b := newBatcher(64, 1, f.flush)
	startBatcher(t, b)

	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1)
	const n = 8
	var chans []<-chan outcome
	for i := 0; i < n; i++ {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("w%d-a", i), fmt.Sprintf("w%d-b", i)))
	}
	waitQueued(t, b, n-1)
	f.open()

	checkEcho(t, await(t, first)) // its own group succeeded
	for _, ch := range chans {
		o := await(t, ch)
		if !errors.Is(o.err, boom) {
			t.Errorf("submit %v: err = %v, want the flush error", o.ids, o.err)
		}
		if o.res != nil {
			t.Errorf("submit %v: results %v alongside an error", o.ids, o.res)
		}
	}

	// The batcher keeps working after a failed group.
	res, err := b.submit(context.Background(), []*fsmpb.Op{grantOp("after")})
	checkEcho(t, outcome{ids: []string{"after"}, res: res, err: err})
}

func TestBatcherWrongResultCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trim  func([]*fsmpb.OpResult) []*fsmpb.OpResult
		nsubs int
	}{
		{"one too few", func(r []*fsmpb.OpResult) []*fsmpb.OpResult { return r[:len(r)-1] }, 3},
		{"one too many", func(r []*fsmpb.OpResult) []*fsmpb.OpResult { return append(r, &fsmpb.OpResult{}) }, 3},
		{"none", func([]*fsmpb.OpResult) []*fsmpb.OpResult { return nil }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFlush(t, false)
			f.answer = func(_ int, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) { return tc.trim(echo(ops)), nil }
			b := newBatcher(64, 1, f.flush)
			startBatcher(t, b)
			var chans []<-chan outcome
			for i := 0; i < tc.nsubs; i++ {
				chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i)))
			}
			for _, ch := range chans {
				o := await(t, ch)
				if !errors.Is(o.err, errBatchResult) {
					t.Errorf("submit %v: err = %v, want %v", o.ids, o.err, errBatchResult)
				}
			}
		})
	}
}

func TestBatcherSubmitHonoursContext(t *testing.T) {
	t.Run("cancelled before submit", func(t *testing.T) {
		f := newFakeFlush(t, false)
		b := newBatcher(64, 1, f.flush)
		// Not running: nothing would ever answer.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := b.submit(ctx, []*fsmpb.Op{grantOp("r")})
		if !errors.Is(err, context.Canceled) || res != nil {
			t.Fatalf("submit with a cancelled context = %v, %v; want nil, context.Canceled", res, err)
		}
	})
	t.Run("cancelled while waiting for the flush", func(t *testing.T) {
		f := newFakeFlush(t, true)
		b := newBatcher(64, 1, f.flush)
		startBatcher(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := submitAsync(ctx, b, "slow")
		f.waitEntered(t, 1)
		cancel()
		o := await(t, ch)
		if !errors.Is(o.err, context.Canceled) {
			t.Fatalf("submit cancelled during flush: err = %v, want context.Canceled", o.err)
		}
		// The late result is dropped without blocking the batcher.
		f.open()
		res, err := b.submit(context.Background(), []*fsmpb.Op{grantOp("next")})
		checkEcho(t, outcome{ids: []string{"next"}, res: res, err: err})
	})
	t.Run("deadline while queued behind a busy pipeline", func(t *testing.T) {
		f := newFakeFlush(t, true)
		b := newBatcher(64, 1, f.flush)
		startBatcher(t, b)
		first := submitAsync(context.Background(), b, "first")
		f.waitEntered(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		o := await(t, submitAsync(ctx, b, "late"))
		if !errors.Is(o.err, context.DeadlineExceeded) {
			t.Fatalf("submit behind a stuck flush: err = %v, want context.DeadlineExceeded", o.err)
		}
		f.open()
		checkEcho(t, await(t, first))
	})
}

// submitThen queues without waiting: its ops join the group of whatever
// waits beside them (blocking submitters too), the callback gets their
// results in order on the flushing goroutine, an op whose deadline passed
// gets nil, a flush error reaches the callback, and a submission whose
// context ended before it was queued reports false and is never called.
func TestBatcherSubmitThen(t *testing.T) {
	f := newFakeFlush(t, true)
	f.answer = func(call int, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
		if call == 3 {
			return nil, errors.New("leadership lost")
		}
		return echo(ops), nil
	}
	b := newBatcher(64, 1, f.flush)
	startBatcher(t, b)
	then := func(ids ...string) (chan outcome, []*fsmpb.Op, []time.Time) {
		ch := make(chan outcome, 1)
		ops := make([]*fsmpb.Op, len(ids))
		for i, id := range ids {
			ops[i] = grantOp(id)
		}
		return ch, ops, make([]time.Time, len(ids))
	}
	call := func(ch chan outcome, ids []string) func(submitResult) {
		return func(r submitResult) { ch <- outcome{ids: ids, res: r.results, err: r.err} }
	}

	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1)
	chA, opsA, dA := then("a1", "a2")
	chB, opsB, dB := then("b1", "late")
	dB[1] = time.Now().Add(-time.Second) // already passed: dropped, never flushed
	if !b.submitThen(context.Background(), opsA, dA, 0, call(chA, []string{"a1", "a2"})) ||
		!b.submitThen(context.Background(), opsB, dB, 0, call(chB, []string{"b1", "late"})) {
		t.Fatal("submitThen refused with a live context")
	}
	blocking := submitAsync(context.Background(), b, "c")
	waitQueued(t, b, 2) // the run loop holds the first, waiting for a slot
	f.open()
	checkEcho(t, await(t, first))
	checkEcho(t, await(t, chA))
	checkEcho(t, await(t, blocking))
	b2 := await(t, chB)
	if b2.err != nil || len(b2.res) != 2 || b2.res[0].GetMessage() != "b1" || b2.res[1] != nil {
		t.Fatalf("submission with a passed deadline: %v %v, want b1's result and nil", b2.res, b2.err)
	}
	if groups := f.snapshot(); len(groups) != 2 || fmt.Sprint(groups[1]) != "[a1 a2 b1 c]" {
		t.Fatalf("groups %v, want [first] then [a1 a2 b1 c]", groups)
	}

	chE, opsE, dE := then("e")
	b.submitThen(context.Background(), opsE, dE, 0, call(chE, []string{"e"}))
	if o := await(t, chE); o.err == nil || o.res != nil {
		t.Fatalf("flush error: callback got %v, %v", o.res, o.err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	full := newBatcher(1, 1, f.flush) // not running: its queue fills
	for len(full.in) < cap(full.in) {
		full.in <- &submission{}
	}
	if full.submitThen(ctx, []*fsmpb.Op{grantOp("x")}, make([]time.Time, 1), 0, func(submitResult) { t.Error("called after a refused submitThen") }) {
		t.Fatal("submitThen with an ended context and a full queue reported queued")
	}
}

// The pipeline slot is given back once a group is flushed, before its
// results are handed out: a callback still building its answer does not
// hold up the next group (with one slot, it would wait for it forever).
func TestBatcherFreesSlotBeforeAnswers(t *testing.T) {
	f := newFakeFlush(t, false)
	b := newBatcher(64, 1, f.flush)
	startBatcher(t, b)
	next := make(chan outcome, 1)
	answered := make(chan struct{})
	ok := b.submitThen(context.Background(), []*fsmpb.Op{grantOp("first")}, make([]time.Time, 1), 0, func(submitResult) {
		// Still answering the first group: the second must get through.
		select {
		case o := <-submitAsync(context.Background(), b, "second"):
			next <- o
			close(answered)
		case <-time.After(batchWait):
		}
	})
	if !ok {
		t.Fatal("submitThen refused")
	}
	select {
	case <-answered:
	case <-time.After(batchWait):
		t.Fatal("the second group waited for the first group's answers")
	}
	checkEcho(t, <-next)
}

// With flushThen (a follower's forwarding), a group's flush is started and
// its answers come later from whoever calls done: nothing waits in
// between, the slot stays taken until done (pipeline 1: the next group is
// not started before), answers reach each submission in order with nil
// for an op dropped for its deadline, and an error reaches the whole
// group.
func TestBatcherFlushThen(t *testing.T) {
	type started struct {
		ops  []*fsmpb.Op
		done func([]*fsmpb.OpResult, error)
	}
	starts := make(chan started, 4)
	b := newBatcher(64, 1, func([]*fsmpb.Op, []time.Time) ([]*fsmpb.OpResult, error) {
		t.Error("flush called on a batcher with flushThen")
		return nil, nil
	})
	b.flushThen = func(ops []*fsmpb.Op, _ []time.Time, done func([]*fsmpb.OpResult, error)) {
		starts <- started{ops, done}
	}
	startBatcher(t, b)
	next := func() started {
		t.Helper()
		select {
		case s := <-starts:
			return s
		case <-time.After(batchWait):
			t.Fatal("no group was started")
			return started{}
		}
	}

	first := submitAsync(context.Background(), b, "first")
	g1 := next()
	second := submitAsync(context.Background(), b, "a", "b")
	late := make(chan outcome, 1)
	dl := []time.Time{{}, time.Now().Add(-time.Second)} // the second op's deadline passed: never sent
	b.submitThen(context.Background(), []*fsmpb.Op{grantOp("c"), grantOp("gone")}, dl, 0, func(r submitResult) {
		late <- outcome{res: r.results, err: r.err}
	})
	// The run loop holds one of the two submissions, waiting for the
	// slot; the other waits in the queue.
	waitQueued(t, b, 1)
	select {
	case s := <-starts:
		t.Fatalf("group %v started while the only slot was taken", opIDs(s.ops))
	case <-time.After(50 * time.Millisecond):
	}
	g1.done(echo(g1.ops), nil)
	checkEcho(t, await(t, first))
	g2 := next()
	if got := opIDs(g2.ops); len(got) != 3 || !slices.Contains(got, "a") || !slices.Contains(got, "c") || slices.Contains(got, "gone") {
		t.Fatalf("second group %v, want a, b and c (in the order they queued), not the op past its deadline", got)
	}
	g2.done(echo(g2.ops), nil)
	checkEcho(t, await(t, second))
	o := await(t, late)
	if o.err != nil || len(o.res) != 2 || o.res[0].GetMessage() != "c" || o.res[1] != nil {
		t.Fatalf("submission with a passed deadline: %v %v, want c's result and nil", o.res, o.err)
	}

	third := submitAsync(context.Background(), b, "x", "y")
	g3 := next()
	g3.done(nil, errors.New("stream to the leader broke"))
	if o := await(t, third); o.err == nil || o.res != nil {
		t.Fatalf("failed flush: submission got %v, %v; want the error", o.res, o.err)
	}
	fourth := submitAsync(context.Background(), b, "z")
	g4 := next() // the failed group gave its slot back
	g4.done(echo(g4.ops)[:0], nil)
	if o := await(t, fourth); o.err != errBatchResult {
		t.Fatalf("wrong result count: got %v, %v; want errBatchResult", o.res, o.err)
	}
}

func opIDs(ops []*fsmpb.Op) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.GetGrant().GetRequestId()
	}
	return out
}
