package integration

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// failpoint is one fault the robustness suite injects into a running
// cluster, after etcd's robustness suite: Inject breaks something, Heal
// undoes it and returns once the cluster has a leader again. Both run on
// the test goroutine (they may call t.Fatal).
type failpoint interface {
	Name() string
	Inject(c *chaosCluster)
	Heal(c *chaosCluster)
}

// failpointNames lists the implemented faults; newFailpoint makes a fresh
// one (a failpoint remembers its victim between Inject and Heal).
var failpointNames = []string{"kill-leader", "kill-follower", "pause-leader", "clock-step-leader",
	"isolate-follower", "isolate-leader", "clock-step-back-leader", "restart-cluster", "pause-follower"}

// pauseHold is how long a pause lasts: 4 s (longer than the suite's 3 s
// lease TTL) in the CI pass, 1-20 s drawn from rng in a campaign.
func pauseHold(rng *rand.Rand) time.Duration {
	if os.Getenv("TRIAD_CHAOS") == "" {
		return 4 * time.Second
	}
	return time.Second + time.Duration(rng.Int63n(int64(19*time.Second)))
}

func newFailpoint(name string, rng *rand.Rand) failpoint {
	switch name {
	case "kill-leader":
		return &killFailpoint{leader: true}
	case "kill-follower":
		return &killFailpoint{}
	case "pause-leader":
		return &pauseFailpoint{leader: true, hold: pauseHold(rng)}
	case "pause-follower":
		return &pauseFailpoint{hold: pauseHold(rng)}
	case "clock-step-leader":
		return &clockStepFailpoint{name: name, step: time.Hour}
	case "clock-step-back-leader":
		return &clockStepFailpoint{name: name, step: -time.Hour}
	case "isolate-follower":
		return &isolateFailpoint{hold: 4 * time.Second}
	case "isolate-leader":
		return &isolateFailpoint{leader: true, hold: 4 * time.Second}
	case "restart-cluster":
		return &restartFailpoint{}
	}
	panic("no failpoint " + name)
}

// liveLeader asks every live member for the leader until one names a live
// member.
func liveLeader(c *chaosCluster, d time.Duration) *member {
	c.t.Helper()
	var l *member
	waitFor(c.t, d, "a leader", func() error {
		for _, m := range c.members {
			if m.cmd == nil {
				continue
			}
			s, err := c.status(m)
			if err != nil || s.Leader == "" {
				continue
			}
			for _, x := range c.members {
				if x.name == s.Leader && x.cmd != nil {
					l = x
					return nil
				}
			}
		}
		return fmt.Errorf("no live member names a live leader")
	})
	return l
}

func follower(c *chaosCluster, leader *member) *member {
	for _, m := range c.members {
		if m != leader && m.cmd != nil {
			return m
		}
	}
	c.t.Fatal("no live follower")
	return nil
}

// killFailpoint SIGKILLs the leader or a follower; Heal restarts it on
// its data directory and addresses.
type killFailpoint struct {
	leader bool
	victim *member
}

func (f *killFailpoint) Name() string {
	if f.leader {
		return "kill-leader"
	}
	return "kill-follower"
}

func (f *killFailpoint) Inject(c *chaosCluster) {
	l := liveLeader(c, 20*time.Second)
	f.victim = l
	if !f.leader {
		f.victim = follower(c, l)
	}
	f.victim.kill()
}

func (f *killFailpoint) Heal(c *chaosCluster) {
	f.victim.start()
	liveLeader(c, 20*time.Second)
}

// pauseFailpoint SIGSTOPs the leader or a follower for hold (in the CI
// pass longer than the lease TTL the suite runs with), then SIGCONTs it: a
// member that wakes up after its leases should have expired, with writes
// (and forwarded checkouts) in its buffers.
type pauseFailpoint struct {
	leader bool
	hold   time.Duration
	victim *member
}

func (f *pauseFailpoint) Name() string {
	if f.leader {
		return "pause-leader"
	}
	return "pause-follower"
}

func (f *pauseFailpoint) Inject(c *chaosCluster) {
	f.victim = liveLeader(c, 20*time.Second)
	if !f.leader {
		f.victim = follower(c, f.victim)
	}
	if err := f.victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	time.Sleep(f.hold) // the fault itself: the member stays paused this long
}

func (f *pauseFailpoint) Heal(c *chaosCluster) {
	if err := f.victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
	liveLeader(c, 20*time.Second)
}

// clockFile is the member's --test-clock-file.
func clockFile(m *member) string { return filepath.Join(m.dir, "clock-step") }

// clockStepFailpoint steps the leader's wall clock by step (an NTP step,
// forward or back), on top of any earlier step; it stays stepped. Leases
// must neither expire early (forward) nor be stretched or over-granted
// (back): the leader's now follows its monotonic clock and never goes
// below the last committed now.
type clockStepFailpoint struct {
	name string
	step time.Duration
}

func (f *clockStepFailpoint) Name() string { return f.name }

func (f *clockStepFailpoint) Inject(c *chaosCluster) {
	l := liveLeader(c, 20*time.Second)
	var cur time.Duration
	if b, err := os.ReadFile(clockFile(l)); err == nil {
		cur, _ = time.ParseDuration(strings.TrimSpace(string(b)))
	}
	before := strings.Count(l.log(), "test clock stepped")
	if err := os.WriteFile(clockFile(l), []byte((cur + f.step).String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 5*time.Second, "the leader's clock stepped", func() error {
		if strings.Count(l.log(), "test clock stepped") <= before {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func (f *clockStepFailpoint) Heal(c *chaosCluster) { liveLeader(c, 20*time.Second) }

// isolateFailpoint cuts one member (the leader, or a follower) off from
// the other two, in both directions, for hold (longer than the lease
// TTL): every Raft and Peer connection between it and them is closed and
// new ones are blackholed by the proxies on the failover ports. Clients
// still reach it on its licensing port, as clients on its side of a
// broken switch would; while it is cut off a minority worker whose client
// knows only this member checks seats out (check: a minority never
// grants). Heal stops that worker, restores the links and resolves the
// worker's unanswered request ids through the whole cluster.
type isolateFailpoint struct {
	leader bool
	hold   time.Duration
	victim *member
	mw     *minorityWorker
}

func (f *isolateFailpoint) Name() string {
	if f.leader {
		return "isolate-leader"
	}
	return "isolate-follower"
}

func (f *isolateFailpoint) Inject(c *chaosCluster) {
	l := liveLeader(c, 20*time.Second)
	f.victim = l
	if !f.leader {
		f.victim = follower(c, l)
	}
	c.isolate(f.victim)
	f.mw = c.startMinority(f.victim)
	time.Sleep(f.hold) // the fault itself: the member stays cut off this long
}

func (f *isolateFailpoint) Heal(c *chaosCluster) {
	f.mw.stop()
	c.healLinks()
	liveLeader(c, 20*time.Second)
	f.mw.resolve(c)
}

// restartFailpoint SIGKILLs all three members (a power cut of the whole
// cluster), then Heal starts them again on their data directories:
// leases held and renewed before survive, clients keep renewing them
// (Grace while no member answers, Held again with the same ids after).
type restartFailpoint struct{}

func (f *restartFailpoint) Name() string { return "restart-cluster" }

func (f *restartFailpoint) Inject(c *chaosCluster) {
	for _, m := range c.members {
		m.kill()
	}
}

func (f *restartFailpoint) Heal(c *chaosCluster) {
	for _, m := range c.members {
		m.start()
	}
	liveLeader(c, 30*time.Second)
}
