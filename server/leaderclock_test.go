package server

import (
	"testing"
	"time"
)

// fakeClock is a wall clock that tests step and a monotonic clock that
// only moves with advance.
type fakeClock struct {
	wall time.Time
	mono time.Duration
}

func (f *fakeClock) advance(d time.Duration) { f.wall, f.mono = f.wall.Add(d), f.mono+d }

func newFakeLeaderClock() (*leaderClock, *fakeClock) {
	f := &fakeClock{wall: time.UnixMilli(1_800_000_000_000)}
	return &leaderClock{wall: func() time.Time { return f.wall }, mono: func() time.Duration { return f.mono }}, f
}

func TestLeaderClockIgnoresWallSteps(t *testing.T) {
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		c, f := newFakeLeaderClock()
		t0 := f.wall.UnixMilli()
		c.lead(t0 - 5000)
		if got := c.nowMs(t0 - 5000); got != t0 {
			t.Fatalf("step %s: first now %d, want the wall clock %d", step, got, t0)
		}
		f.advance(2 * time.Second)
		f.wall = f.wall.Add(step) // NTP steps the wall clock
		f.advance(time.Second)
		if got, want := c.nowMs(t0), t0+3000; got != want {
			t.Fatalf("step %s: now %d after 3 s, want %d (moved with the wall clock by %s)", step, got, want, time.Duration(got-want)*time.Millisecond)
		}
	}
}

// A new leader whose clock is behind continues from the last committed now
// and never stamps below it.
func TestLeaderClockNewLeaderBehind(t *testing.T) {
	c, f := newFakeLeaderClock()
	committed := f.wall.Add(time.Hour).UnixMilli() // the old leader was an hour ahead
	if got := c.nowMs(committed); got != committed {
		t.Fatalf("before lead: now %d, want the committed %d", got, committed)
	}
	c.lead(committed)
	if got := c.nowMs(committed); got != committed {
		t.Fatalf("now %d, want the committed %d", got, committed)
	}
	f.advance(1500 * time.Millisecond)
	if got := c.nowMs(committed); got != committed+1500 {
		t.Fatalf("after 1.5 s: now %d, want %d (time must advance from the committed now)", got, committed+1500)
	}
}

// A new leader whose clock is ahead starts at its own wall time (the
// RebaseLeases it commits first restarts every TTL from it).
func TestLeaderClockNewLeaderAhead(t *testing.T) {
	c, f := newFakeLeaderClock()
	committed := f.wall.Add(-time.Hour).UnixMilli()
	c.lead(committed)
	if got := c.nowMs(committed); got != f.wall.UnixMilli() {
		t.Fatalf("now %d, want the wall %d", got, f.wall.UnixMilli())
	}
}

// Never backwards: not across leaderships, not below an earlier answer.
func TestLeaderClockNeverBackwards(t *testing.T) {
	c, f := newFakeLeaderClock()
	c.lead(0)
	f.advance(10 * time.Second)
	high := c.nowMs(0)
	c.follow()
	f.wall = f.wall.Add(-time.Hour)
	if got := c.nowMs(0); got < high {
		t.Fatalf("as a follower after a step back: %d < %d", got, high)
	}
	c.lead(0)
	if got := c.nowMs(0); got < high {
		t.Fatalf("leading again after a step back: %d < %d", got, high)
	}
}

// Before lead (a new leader still catching up, or a member that never
// led) time stands still at the committed now even when the wall clock is
// an hour ahead: the jump shows only from the leader's RebaseLeases, which
// names the committed now it jumps from (found by the robustness suite:
// commands stamped with the wall clock before the rebase hid the jump from
// the request memory).
func TestLeaderClockBeforeLeadIgnoresWall(t *testing.T) {
	c, f := newFakeLeaderClock()
	committed := f.wall.Add(-time.Hour).UnixMilli()
	if got := c.nowMs(committed); got != committed || c.ready() {
		t.Fatalf("before lead: now %d ready %v, want the committed %d and not ready (the wall is %s ahead)", got, c.ready(), committed, time.Duration(f.wall.UnixMilli()-committed)*time.Millisecond)
	}
	c.lead(committed)
	if !c.ready() {
		t.Fatal("leading: not ready")
	}
	if got := c.nowMs(committed); got != f.wall.UnixMilli() {
		t.Fatalf("leading: now %d, want the wall %d", got, f.wall.UnixMilli())
	}
}
