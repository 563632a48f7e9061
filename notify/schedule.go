package notify

import (
	"fmt"
	"syscall"
	"time"
)

// DiskWatch turns disk-usage readings into notifications as the seeds'
// product does: one when usage reaches the threshold, and one again at
// every further whole percent, up or down, while it stays at or above it.
// Dropping under the threshold re-arms it silently.
type DiskWatch struct {
	Threshold int
	last      int // last percent notified; 0 while under the threshold
}

// Observe takes a reading in whole percent and reports whether it is due
// a notification.
func (d *DiskWatch) Observe(percent int) bool {
	if percent < d.Threshold {
		d.last = 0
		return false
	}
	if percent == d.last {
		return false
	}
	d.last = percent
	return true
}

// DiskUsage is the use of the file system holding dir, in whole percent
// (rounded down) of the space available to the member, as df counts it:
// used / (used + available to unprivileged users).
func DiskUsage(dir string) (int, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("measure the disk of %s: %w", dir, err)
	}
	used := (st.Blocks - st.Bfree) * uint64(st.Bsize)
	avail := st.Bavail * uint64(st.Bsize)
	if used+avail == 0 {
		return 0, nil
	}
	return int(used * 100 / (used + avail)), nil
}

// Daily fires once a day at a local hour: Due is polled with the member's
// clock and answers true at the first poll at or after that hour each day.
// A clock that jumps forward fires once, not once per day skipped; the
// first poll only arms it, so a member started at 01:30 waits for the next
// day's 01:00.
type Daily struct {
	Hour int
	next time.Time
}

// Due reports whether the daily time has come at now.
func (d *Daily) Due(now time.Time) bool {
	if d.next.IsZero() {
		d.next = NextDaily(now, d.Hour)
		return false
	}
	if now.Before(d.next) {
		return false
	}
	d.next = NextDaily(now, d.Hour)
	return true
}

// Next is when Due will next answer true (zero before the first poll).
func (d *Daily) Next() time.Time { return d.next }

// NextDaily is the first hour:00 strictly after t, in t's location.
// time.Date normalises a wall time a DST change skips (02:30 on a spring
// night) to the hour after.
func NextDaily(t time.Time, hour int) time.Time {
	y, m, day := t.Date()
	next := time.Date(y, m, day, hour, 0, 0, 0, t.Location())
	if !next.After(t) {
		next = time.Date(y, m, day+1, hour, 0, 0, 0, t.Location())
	}
	return next
}
