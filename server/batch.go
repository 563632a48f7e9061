package server

import (
	"context"
	"errors"

	"github.com/triadlm/triad/proto/fsmpb"
)

// batcher collects concurrent lease operations and hands them to flush in
// groups: one Raft log entry (on the leader) or one forwarding RPC (on a
// follower) carries every request waiting at that moment. Under light load a
// request goes alone and at once; under heavy load the waiting room fills
// while earlier groups are on disk, so batches grow with the load and the
// fsync cost per request falls.
type batcher struct {
	in       chan *submission
	maxOps   int
	maxBytes int // encoded ops per group (limits.go); a larger submission goes alone
	inflight chan struct{}
	flush    func(ops []*fsmpb.Op) ([]*fsmpb.OpResult, error)
}

type submission struct {
	ops  []*fsmpb.Op
	size int // encoded bytes of ops
	done chan submitResult
}

type submitResult struct {
	results []*fsmpb.OpResult
	err     error
}

var errBatchResult = errors.New("internal error: batch result count does not match the request")

func newBatcher(maxOps, pipeline int, flush func([]*fsmpb.Op) ([]*fsmpb.OpResult, error)) *batcher {
	return &batcher{
		in:       make(chan *submission, 4*maxOps),
		maxOps:   maxOps,
		maxBytes: maxEntryBytes,
		inflight: make(chan struct{}, pipeline),
		flush:    flush,
	}
}

// submit queues ops and waits for their results, in order.
func (b *batcher) submit(ctx context.Context, ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
	s := &submission{ops: ops, size: opsSize(ops), done: make(chan submitResult, 1)}
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
			first.done <- submitResult{err: ctx.Err()}
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
		go b.flushGroup(subs, n)
	}
}

func (b *batcher) flushGroup(subs []*submission, n int) {
	defer func() { <-b.inflight }()
	ops := make([]*fsmpb.Op, 0, n)
	for _, s := range subs {
		ops = append(ops, s.ops...)
	}
	results, err := b.flush(ops)
	if err == nil && len(results) != len(ops) {
		err = errBatchResult
	}
	off := 0
	for _, s := range subs {
		if err != nil {
			s.done <- submitResult{err: err}
			continue
		}
		s.done <- submitResult{results: results[off : off+len(s.ops)]}
		off += len(s.ops)
	}
}
