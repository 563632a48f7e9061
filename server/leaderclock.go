package server

import (
	"sync"
	"time"
)

// leaderClock is the time the leader stamps into commands (now_ms). It
// never goes backwards and does not jump with the wall clock: at the start
// of leadership it takes the larger of the wall clock and the last
// committed now, and from there it advances with the monotonic clock only.
// An NTP step on the leader (forward or back) therefore neither expires
// leases whose holders renew nor stretches them; a new leader whose clock
// is behind continues from the last committed now. A new leader whose
// clock is ahead starts at its own wall time: the RebaseLeases command it
// commits first restarts every lease's TTL from that time.
//
// The wall clock is read again only at the next leadership change, so a
// step is adopted at the next election (docs/decisions.md).
type leaderClock struct {
	wall func() time.Time     // the member's wall clock
	mono func() time.Duration // monotonic time since an arbitrary origin

	mu       sync.Mutex
	leading  bool
	baseMs   int64         // now at the start of leadership
	baseMono time.Duration // mono() at the start of leadership
	lastMs   int64         // the largest value handed out
}

func newLeaderClock(wall func() time.Time) *leaderClock {
	origin := time.Now()
	return &leaderClock{wall: wall, mono: func() time.Duration { return time.Since(origin) }}
}

// lead starts a leadership: committedMs is the FSM's last committed now,
// read after the leader's barrier.
func (c *leaderClock) lead(committedMs int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leading = true
	c.baseMs = max(c.wall().UnixMilli(), committedMs, c.lastMs)
	c.baseMono = c.mono()
}

// follow ends the leadership.
func (c *leaderClock) follow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leading = false
}

// nowMs returns the time to stamp into a command, never below committedMs
// (the FSM's last committed now) nor below an earlier answer. Before lead
// time stands still at that floor; such a leader proposes nothing (ready).
func (c *leaderClock) nowMs(committedMs int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	if c.leading {
		n = c.baseMs + (c.mono() - c.baseMono).Milliseconds()
	}
	n = max(n, committedMs, c.lastMs)
	c.lastMs = n
	return n
}

// ready reports whether this member leads with its clock set (after its
// barrier). Before, a new leader must not stamp commands: its FSM may not
// have caught up (its last now can be far behind, even zero after a
// restart), and its wall clock may be ahead, a jump that must show first in
// the RebaseLeases that names the committed now it jumps from (found by the
// robustness suite: a batch stamped before the rebase hid the jump from the
// request memory, or stamped 1970 after a restart).
func (c *leaderClock) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}
