package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minHeapTarget is the smallest heap a member lets its collector aim for
// (like a JVM's -Xms): the collector runs when the heap reaches the larger
// of defaultGCPercent over what is live and this. A member holding 100,000
// leases has ~80 MB live and its target is the percentage's, so memory per
// held lease stays ~970 B; a member with less live (a small site, or the
// ~37 MB left after a burst of leases ended) gets room for a few seconds of
// checkouts between collections instead of one every half second, whose
// marking takes a core away from serving: checkout p99 under 64 clients
// 9.5–9.8 ms against 11.1–13.1 ms after the 100,000-lease hold. A 96 MB
// floor did better still (8.6–9.0 ms) but held ~1,100 B per lease at
// 100,000 leases (docs/performance.md, "Session 9").
const minHeapTarget = 64 << 20

// maxGCPercent bounds the percentage the floor asks for on a nearly empty
// heap.
const maxGCPercent = 2000

// heapFloor keeps the collector's target at or above a minimum heap: after
// every collection it reads what is live and sets the GC percentage to the
// larger of base and what reaches min.
type heapFloor struct {
	base int
	min  uint64
	// mu orders adjust and stop: once stop returns, nothing changes the
	// percentage any more.
	mu      sync.Mutex
	stopped bool
	last    int
	sample  []metrics.Sample
}

// percentFor is the GC percentage for live bytes: base, or more when
// live × (1 + base/100) falls short of the floor.
func (h *heapFloor) percentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	if live >= h.min {
		return h.base
	}
	need := int(((h.min-live)*100 + live - 1) / live)
	return max(h.base, min(need, maxGCPercent))
}

// keepHeapFloor starts adjusting the GC percentage after each collection
// (from base, the percentage set now); stop ends it.
func keepHeapFloor(base int, min uint64) (stop func()) {
	h := &heapFloor{base: base, min: min, last: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	h.arm()
	return func() {
		h.mu.Lock()
		h.stopped = true
		h.mu.Unlock()
	}
}

// sentinel is collected by every garbage collection; its finalizer runs
// after it and arms a new one.
type sentinel struct{ _ *byte }

func (h *heapFloor) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if h.adjust() {
			h.arm()
		}
	})
}

// adjust sets the percentage for what the last collection found live;
// false once stopped.
func (h *heapFloor) adjust() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	metrics.Read(h.sample)
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	if p := h.percentFor(h.sample[0].Value.Uint64()); p != h.last {
		debug.SetGCPercent(p)
		h.last = p
	}
	return true
}
