package server

import "sync/atomic"

// workers runs short calls on goroutines that outlive them. A Session
// stream serves each call on a goroutine of its own; a fresh goroutine
// starts with a small stack and grows it (copying it each time) on every
// call's deep path through the handlers, protobuf and Raft, which cost
// about a tenth of the leader's CPU under load (docs/performance.md). A
// kept worker keeps its grown stack. At most max workers are kept; beyond
// that a call gets a plain goroutine, so nothing ever waits for a worker.
type workers struct {
	work chan func()
	n    atomic.Int32
	max  int32
	done <-chan struct{}
}

func newWorkers(max int, done <-chan struct{}) *workers {
	return &workers{work: make(chan func()), max: int32(max), done: done}
}

// run starts f at once: on an idle worker, a new kept worker, or a new
// goroutine. A nil *workers starts a goroutine.
func (w *workers) run(f func()) {
	if w == nil {
		go f()
		return
	}
	select {
	case w.work <- f:
		return
	default:
	}
	if w.n.Add(1) <= w.max {
		go w.loop(f)
		return
	}
	w.n.Add(-1)
	go f()
}

func (w *workers) loop(f func()) {
	defer w.n.Add(-1)
	for {
		f()
		select {
		case f = <-w.work:
		case <-w.done:
			return
		}
	}
}
