package server

import (
	"context"
	"errors"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
)

// batcher collects concurrent lease operations and hands them to flush in
// groups: one Raft log entry (on the leader) or one forwarding RPC (on a
// follower) carries every request waiting at that moment. Under light load a
// request goes alone and at once; under heavy load the waiting room fills
// while earlier groups are on disk, so batches grow with the load and the
// fsync cost per request falls.
//
// Every op carries its caller's deadline (zero: none). An op whose deadline
// has passed when its group is flushed is dropped, never proposed nor
// forwarded: its caller has given up and may have retried elsewhere, and a
// late proposal would take a seat nobody holds (issue 11 point 7). Its
// result is nil.
type batcher struct {
	in       chan *submission
	maxOps   int
	maxBytes int // encoded ops per group (limits.go); a larger submission goes alone
	inflight chan struct{}
	// flush proposes or forwards ops, each with its caller's deadline (zero:
	// none); a nil result means the op was dropped downstream for its
	// deadline.
	flush func(ops []*fsmpb.Op, deadlines []time.Time) ([]*fsmpb.OpResult, error)
	// flushThen, when set, is used instead of flush: it starts the flush
	// and hands the results or the error to done later, on a goroutine of
	// its own choosing (a follower's forwarding stream reader), which then
	// hands them out. done must be called exactly once.
	flushThen func(ops []*fsmpb.Op, deadlines []time.Time, done func([]*fsmpb.OpResult, error))
	now       func() time.Time
}

type submission struct {
	ops       []*fsmpb.Op
	deadlines []time.Time // per op; zero: none
	size      int         // encoded bytes of ops
	done      chan submitResult
	// then, when set, takes the result instead of done, on the goroutine
	// that flushed the group (submitThen).
	then func(submitResult)
}

type submitResult struct {
	results []*fsmpb.OpResult
	err     error
}

var errBatchResult = errors.New("internal error: batch result count does not match the request")

func newBatcher(maxOps, pipeline int, flush func([]*fsmpb.Op, []time.Time) ([]*fsmpb.OpResult, error)) *batcher {
	return &batcher{
		in:       make(chan *submission, 4*maxOps),
		maxOps:   maxOps,
		maxBytes: maxEntryBytes,
		inflight: make(chan struct{}, pipeline),
		flush:    flush,
		now:      time.Now,
	}
}

// submit queues ops, each with ctx's deadline, and waits for their results,
// in order. The result of an op dropped for its deadline is nil.
func (b *batcher) submit(ctx context.Context, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
	d, _ := ctx.Deadline()
	deadlines := make([]time.Time, len(ops))
	for i := range deadlines {
		deadlines[i] = d
	}
	return b.submitUntil(ctx, ops, deadlines)
}

// submitUntil is submit with a deadline per op (zero: none), as a
// forwarded batch carries them.
func (b *batcher) submitUntil(ctx context.Context, ops []*fsmpb.Op, deadlines []time.Time) ([]*fsmpb.OpResult, error) {
	return b.submitSized(ctx, ops, deadlines, opsSize(ops))
}

// submitSized is submitUntil for ops whose encoded size (opsSize) the
// caller has already computed.
func (b *batcher) submitSized(ctx context.Context, ops []*fsmpb.Op, deadlines []time.Time, size int) ([]*fsmpb.OpResult, error) {
	s := &submission{ops: ops, deadlines: deadlines, size: size, done: make(chan submitResult, 1)}
	select {
	case b.in <- s:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-s.done:
		return r.results, r.err
	case <-ctx.Done():
		// The ops may still be applied; callers retry with the same
		// request ids, which the FSM deduplicates.
		return nil, ctx.Err()
	}
}

// submitThen queues ops, each with its deadline (zero: none), and returns:
// then gets their results (nil: dropped for its deadline) or the error,
// on the goroutine that flushed their group. It must not block. false:
// ctx ended before the ops were queued, and then is not called.
func (b *batcher) submitThen(ctx context.Context, ops []*fsmpb.Op, deadlines []time.Time, size int, then func(submitResult)) bool {
	select {
	case b.in <- &submission{ops: ops, deadlines: deadlines, size: size, then: then}:
		return true
	case <-ctx.Done():
		return false
	}
}

// run groups submissions until ctx ends.
func (b *batcher) run(ctx context.Context) {
	// carry is a submission that did not fit in the previous group's bytes:
	// it starts the next group.
	var carry *submission
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case <-ctx.Done():
				return
			case first = <-b.in:
			}
		}
		select {
		case b.inflight <- struct{}{}:
		case <-ctx.Done():
			first.finish(submitResult{err: ctx.Err()})
			return
		}
		// Drain what queued while we waited for a pipeline slot.
		subs := []*submission{first}
		n, size := len(first.ops), first.size
	drain:
		for n < b.maxOps {
			select {
			case s := <-b.in:
				if b.maxBytes > 0 && size+s.size > b.maxBytes {
					carry = s
					break drain
				}
				subs = append(subs, s)
				n += len(s.ops)
				size += s.size
			default:
				break drain
			}
		}
		if b.flushThen != nil {
			// Starting the flush does not wait for its answer: no
			// goroutine of its own needed.
			b.flushGroup(subs, n)
		} else {
			go b.flushGroup(subs, n)
		}
	}
}

func (b *batcher) flushGroup(subs []*submission, n int) {
	// Drop the ops whose deadline passed while they waited (a paused
	// member, a slow leader): only live ones are proposed or forwarded.
	now := b.now()
	ops := make([]*fsmpb.Op, 0, n)
	deadlines := make([]time.Time, 0, n)
	live := make([]bool, 0, n)
	for _, s := range subs {
		for i, op := range s.ops {
			d := s.deadlines[i]
			ok := d.IsZero() || now.Before(d)
			live = append(live, ok)
			if ok {
				ops = append(ops, op)
				deadlines = append(deadlines, d)
			}
		}
	}
	finish := func(results []*fsmpb.OpResult, err error) {
		if err == nil && len(results) != len(ops) {
			err = errBatchResult
		}
		// The slot goes back once the group is flushed, before its
		// results are handed out (callbacks build answers): the next
		// group need not wait for that.
		<-b.inflight
		b.handOut(subs, live, results, err)
	}
	switch {
	case len(ops) == 0:
		finish(nil, nil)
	case b.flushThen != nil:
		b.flushThen(ops, deadlines, finish)
	default:
		finish(b.flush(ops, deadlines))
	}
}

// handOut gives each submission of a group its results (nil for an op
// that was not live: dropped for its deadline) or err.
func (b *batcher) handOut(subs []*submission, live []bool, results []*fsmpb.OpResult, err error) {
	off, j := 0, 0
	for _, s := range subs {
		if err != nil {
			s.finish(submitResult{err: err})
			continue
		}
		out := make([]*fsmpb.OpResult, len(s.ops))
		for i := range s.ops {
			if live[off+i] {
				out[i] = results[j]
				j++
			}
		}
		off += len(s.ops)
		s.finish(submitResult{results: out})
	}
}

// finish hands r to the submitter.
func (s *submission) finish(r submitResult) {
	if s.then != nil {
		s.then(r)
		return
	}
	s.done <- r
}
