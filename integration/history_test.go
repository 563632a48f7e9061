package integration

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The robustness suite's history: every client operation with its
// invocation and return times (monotonic, from one start instant), checked
// afterwards against a sequential model of one feature's seat pool.

// never is the return time of an operation whose outcome is unknown: it
// may take effect at any point after its invocation, or not at all.
const never = int64(math.MaxInt64)

type opKind int

const (
	opCheckout opKind = iota
	opRelease
	// opExpire frees a seat held under key by the server on its own (TTL
	// expiry of a lease the client never learned or could not release).
	// It may be a no-op: the seat may never have been taken.
	opExpire
)

type seatInput struct {
	kind opKind
	key  string // lease id, or "r:<request id>" for a lease the client never saw
	req  string // request id of a checkout
}

type outcome int

const (
	granted outcome = iota
	denied
	unknown // timeout or unavailable: may or may not have happened
	done    // release or expiry: always succeeds
)

func (o outcome) String() string {
	return [...]string{"granted", "denied", "unknown", "ok"}[o]
}

// recorder collects operations from concurrent workers.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now is monotonic nanoseconds since the recorder started.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(worker int, in seatInput, out outcome, call, ret int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: worker, Input: in, Output: out, Call: call, Return: ret})
}

func (r *recorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}

// seatState is the set of held keys, sorted.
type seatState []string

func (s seatState) has(k string) bool {
	i := sort.SearchStrings(s, k)
	return i < len(s) && s[i] == k
}

func (s seatState) with(k string) seatState {
	n := append(append(seatState(nil), s...), k)
	sort.Strings(n)
	return n
}

func (s seatState) without(k string) seatState {
	var n seatState
	for _, x := range s {
		if x != k {
			n = append(n, x)
		}
	}
	return n
}

// seatModel is the seat pool of capacity seats, one seat per checkout.
// A checkout is granted only while fewer than capacity seats are held and
// denied only while all are; an unknown checkout either took a seat or did
// nothing; releases and expiries free the seat if it is held.
func seatModel(capacity int) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Init: func() []any { return []any{seatState(nil)} },
		Step: func(state, input, output any) []any {
			s, in, out := state.(seatState), input.(seatInput), output.(outcome)
			switch in.kind {
			case opCheckout:
				switch out {
				case granted:
					if len(s) < capacity && !s.has(in.key) {
						return []any{s.with(in.key)}
					}
					return nil
				case denied:
					if len(s) == capacity {
						return []any{s}
					}
					return nil
				default: // unknown
					next := []any{s}
					if len(s) < capacity && !s.has(in.key) {
						next = append(next, s.with(in.key))
					}
					return next
				}
			default: // release, expire
				return []any{s.without(in.key)}
			}
		},
		Equal: func(a, b any) bool {
			return strings.Join(a.(seatState), ",") == strings.Join(b.(seatState), ",")
		},
		DescribeOperation: func(input, output any) string {
			in := input.(seatInput)
			switch in.kind {
			case opCheckout:
				return fmt.Sprintf("checkout %s -> %v %s", in.req, output, in.key)
			case opRelease:
				return "release " + in.key
			default:
				return "expire " + in.key
			}
		},
		DescribeState: func(state any) string {
			return fmt.Sprintf("%d held: %v", len(state.(seatState)), state)
		},
	}
	return nm.ToModel()
}

// maxDefinitelyHeld is the most seats definitely held at once, a seat
// being definitely held from its grant's answer to its release's call.
func maxDefinitelyHeld(ops []porcupine.Operation) (max int, at int64) {
	type ev struct {
		t int64
		d int
	}
	grantAt := map[string]int64{}
	var evs []ev
	for _, op := range ops {
		in := op.Input.(seatInput)
		if in.kind == opCheckout && op.Output.(outcome) == granted && !strings.HasPrefix(in.key, "r:") {
			grantAt[in.key] = op.Return
		}
	}
	for _, op := range ops {
		in := op.Input.(seatInput)
		if in.kind == opRelease {
			if g, ok := grantAt[in.key]; ok && op.Call > g {
				evs = append(evs, ev{g, 1}, ev{op.Call, -1})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].d < evs[j].d // ends before starts at the same instant
	})
	n := 0
	for _, e := range evs {
		n += e.d
		if n > max {
			max, at = n, e.t
		}
	}
	return max, at
}

// longestGrantGap is the longest time between two successive grant
// answers in [from, to] (its ends included as boundaries).
func longestGrantGap(ops []porcupine.Operation, from, to int64) time.Duration {
	ts := []int64{from, to}
	for _, op := range ops {
		if op.Input.(seatInput).kind == opCheckout && op.Output.(outcome) == granted && op.Return >= from && op.Return <= to {
			ts = append(ts, op.Return)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	var gap int64
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d > gap {
			gap = d
		}
	}
	return time.Duration(gap)
}

// TestSeatModel checks the checker on hand-written histories: legal ones
// (with unknown outcomes) pass, a third seat of two or a denial with a seat
// free does not.
func TestSeatModel(t *testing.T) {
	co := func(key string, out outcome, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: seatInput{kind: opCheckout, key: key, req: key}, Output: out, Call: call, Return: ret}
	}
	rel := func(key string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: seatInput{kind: opRelease, key: key}, Output: done, Call: call, Return: ret}
	}
	exp := func(key string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: seatInput{kind: opExpire, key: key}, Output: done, Call: call, Return: ret}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"legal", []porcupine.Operation{co("1", granted, 0, 1), co("2", granted, 0, 2), co("x", denied, 3, 4), rel("1", 5, 6), co("3", granted, 7, 8)}, true},
		{"third seat", []porcupine.Operation{co("1", granted, 0, 1), co("2", granted, 0, 2), co("3", granted, 3, 4)}, false},
		{"denied with a seat free", []porcupine.Operation{co("1", granted, 0, 1), co("x", denied, 2, 3)}, false},
		{"unknown checkout may hold a seat", []porcupine.Operation{co("r:a", unknown, 0, never), exp("r:a", 0, never), co("1", granted, 1, 2), co("x", denied, 3, 4)}, true},
		{"unknown release frees later", []porcupine.Operation{co("1", granted, 0, 1), co("2", granted, 0, 1), rel("1", 2, never), co("x", denied, 3, 4), co("3", granted, 5, 6)}, true},
		{"denial then grant without a release", []porcupine.Operation{co("1", granted, 0, 1), co("2", granted, 0, 1), co("x", denied, 3, 4), co("3", granted, 5, 6)}, false},
	} {
		if got := porcupine.CheckOperations(seatModel(2), tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.ok)
		}
	}
	if max, _ := maxDefinitelyHeld([]porcupine.Operation{co("1", granted, 0, 1), co("2", granted, 0, 1), co("3", granted, 0, 1), rel("1", 5, 6), rel("2", 5, 6), rel("3", 5, 6)}); max != 3 {
		t.Errorf("maxDefinitelyHeld = %d, want 3", max)
	}
}
