package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/triadlm/triad/client"
)

// The robustness suite (issue 11 points 9 and 10): workers check seats out
// of a small pool and give them back while failpoints kill, pause, cut off
// and restart members and step their clocks; the recorded history is
// checked for linearizability against seatModel and for the invariants
// porcupine cannot see (docs/robustness.md lists them).
//
// As a normal test it runs a short fixed-seed pass of every fault type.
// With TRIAD_CHAOS=1 (make chaos) it runs a randomized campaign for
// CHAOS_DURATION (default 10m), seeded by CHAOS_SEED, and prints a table.

const (
	robustSeats   = 3
	robustWorkers = 6 // churn workers; one more holds leases for seconds, and the keeper one for the whole run
	keeperID      = 99
	robustTTL     = 3 * time.Second
	// robustRetryFor is how long a worker retries a checkout of unknown
	// outcome with the same request id: longer than a whole-cluster
	// restart under -race on a loaded machine.
	robustRetryFor = 30 * time.Second
)

// ciScenarios is the CI pass: every fault type once, two or three per
// cluster (a cluster's start and final checks cost more than a fault).
var ciScenarios = [][]string{
	{"kill-leader", "isolate-follower", "clock-step-back-leader"},
	{"kill-follower", "pause-leader", "isolate-leader"},
	{"clock-step-leader", "restart-cluster", "pause-follower"},
}

func TestRobustness(t *testing.T) {
	if os.Getenv("TRIAD_CHAOS") != "" {
		t.Run("campaign", runCampaign)
		return
	}
	covered := map[string]bool{}
	for _, sc := range ciScenarios {
		for _, f := range sc {
			covered[f] = true
		}
	}
	for _, name := range failpointNames {
		if !covered[name] {
			t.Fatalf("fault %s is not in the CI pass", name)
		}
	}
	for i, faults := range ciScenarios {
		t.Run(strings.Join(faults, "+"), func(t *testing.T) {
			st := runScenario(t, rand.New(rand.NewSource(int64(i+1))), faults)
			t.Logf("%s", st)
		})
	}
}

// chaosCluster is a cluster whose members reach each other only through
// fault proxies on their failover ports (Raft and Peer traffic), each
// member dialing from its own loopback IP, so that a member can be cut
// off; clients reach the members directly. It carries what the workers
// and failpoints share: the history, the client state watch and the
// violations found while running.
type chaosCluster struct {
	*cluster
	ips   map[*member]string
	raft  map[*member]*proxy // in front of each member's failover port
	addrs []string           // licensing addresses, for clients
	rec   *recorder
	watch *stateWatch

	retried  atomic.Int64 // operations that needed a retry of their request id
	minority atomic.Int64 // checkouts asked of a cut-off member
	nextID   atomic.Int64 // client ids of workers started by failpoints

	mu         sync.Mutex
	violations []string
	extraLogs  []*workerLog // workers started by failpoints
}

func (c *chaosCluster) violation(s string) {
	c.mu.Lock()
	c.violations = append(c.violations, s)
	c.mu.Unlock()
}

// startChaosCluster starts three members on 127.0.0.2–4 behind failover
// proxies (advertised with --raft-advertise, dialing from
// --peer-source-ip), each reading a test clock step from clockFile(m),
// forms them and enrolls robustSeats seats of cad v1.
func startChaosCluster(t *testing.T) *chaosCluster {
	c := &chaosCluster{cluster: &cluster{t: t, dir: t.TempDir()}, ips: map[*member]string{}, raft: map[*member]*proxy{}}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for i, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, ips[i], filepath.Join(c.dir, "vendor.pub"))
		rp := newProxy(t, "")
		m.extra = []string{"--lease-ttl", robustTTL.String(), "--test-clock-file", clockFile(m),
			"--raft-advertise", rp.addr(), "--peer-source-ip", ips[i]}
		m.start()
		rp.setTarget(m.raftAddr)
		c.members = append(c.members, m)
		c.ips[m], c.raft[m] = ips[i], rp
		c.addrs = append(c.addrs, m.addr)
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", fmt.Sprintf("cad:1:%d", robustSeats), "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	return c
}

// isolate cuts v off from the other members in both directions: its own
// failover proxy refuses them, theirs refuse it.
func (c *chaosCluster) isolate(v *member) {
	var others []string
	for _, m := range c.members {
		if m != v {
			others = append(others, c.ips[m])
			c.raft[m].cut(c.ips[v])
		}
	}
	c.raft[v].cut(others...)
}

func (c *chaosCluster) healLinks() {
	for _, p := range c.raft {
		p.heal()
	}
}

// newClient is a worker's client: 1 s call timeout, the cluster's test CA,
// reporting lease state changes to the watch.
func (c *chaosCluster) newClient(addrs []string, clientID string, pid int64) *client.Client {
	cl, err := client.New(addrs, tlsOption(c.t), client.WithCallTimeout(time.Second),
		client.WithIdentity("robust", "host", pid, clientID), client.WithStateHandler(c.watch.handle))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { c.watch.closing.Store(true); cl.Close() })
	return cl
}

// stateWatch sees every lease state change of every worker's client. A
// lease reported Lost, or whose id changes (the cluster no longer knew
// it, so the client took another), is a violation: in every fault of the
// suite at least two members stay up and connected, except
// restart-cluster, whose outage is far shorter than the grace period.
type stateWatch struct {
	rec     *recorder
	closing atomic.Bool // the clients are being closed: Lost is expected

	mu     sync.Mutex
	first  map[*client.Lease]uint64
	v      []string
	graces int
}

func (w *stateWatch) track(l *client.Lease, id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.first[l]; !ok {
		w.first[l] = id
	}
}

func (w *stateWatch) handle(ch client.StateChange) {
	if w.closing.Load() || errors.Is(ch.Err, client.ErrClosed) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch.To == client.Grace {
		w.graces++
	}
	if ch.To == client.Lost {
		w.v = append(w.v, fmt.Sprintf("client reported lease %d lost at %s: %v", ch.LeaseID, time.Duration(w.rec.now()), ch.Err))
	}
	first, ok := w.first[ch.Lease]
	if !ok {
		w.first[ch.Lease] = ch.LeaseID
	} else if ch.LeaseID != first && ch.LeaseID != 0 {
		w.v = append(w.v, fmt.Sprintf("lease %d disappeared at %s: the client holds lease %d instead (%s → %s)", first, time.Duration(w.rec.now()), ch.LeaseID, ch.From, ch.To))
	}
}

// runStats is what one scenario saw.
type runStats struct {
	ops, unknown, retried, minority, graces int
	logEntries                              uint64
	faults                                  map[string]int
	gaps                                    map[string]time.Duration // longest gap without a grant, per fault
	violations                              []string
}

func (s runStats) String() string {
	return fmt.Sprintf("ops=%d unknown=%d retried=%d minority=%d graces=%d log-entries-compared=%d faults=%v gaps=%v violations=%d",
		s.ops, s.unknown, s.retried, s.minority, s.graces, s.logEntries, s.faults, s.gaps, len(s.violations))
}

// workerLog is what a worker keeps for the final checks.
type workerLog struct {
	c      *client.Client
	denied []string // request ids answered "no seat"
}

// runScenario forms a cluster, runs the workers, injects the faults one
// after the other (each with traffic before and after), and checks.
func runScenario(t *testing.T, rng *rand.Rand, faults []string) runStats {
	st := runStats{faults: map[string]int{}, gaps: map[string]time.Duration{}}
	began := time.Now()
	phase := func(what string) { t.Logf("%s at %s", what, time.Since(began).Round(10*time.Millisecond)) }
	c := startChaosCluster(t)
	phase("cluster formed")
	c.rec = newRecorder()
	c.watch = &stateWatch{rec: c.rec, first: map[*client.Lease]uint64{}}
	c.nextID.Store(100)

	// The keeper holds one lease through every fault of the run, renewed
	// all along (a long-running product): it must stay the same lease and
	// never be reported lost.
	keeper := &workerLog{c: c.newClient(c.addrs, "robust-keeper", keeperID)}
	kcall := c.rec.now()
	kl, _, err := checkoutRetrying(keeper.c, "keeper")
	if err != nil {
		t.Fatalf("the keeper's checkout: %v", err)
	}
	kid := kl.ID()
	c.watch.track(kl, kid)
	kkey := strconv.FormatUint(kid, 10)
	c.rec.add(keeperID, seatInput{kind: opCheckout, req: "keeper", key: kkey}, granted, kcall, c.rec.now())

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logs := make([]*workerLog, robustWorkers+1)
	for w := range logs {
		logs[w] = &workerLog{c: c.newClient(c.addrs, fmt.Sprintf("robust-%d", w), int64(w+1))}
		seed := rng.Int63()
		hold := func(r *rand.Rand) time.Duration { return time.Duration(50+r.Intn(150)) * time.Millisecond }
		if w == robustWorkers { // the holder: several TTLs, renewed across faults
			hold = func(r *rand.Rand) time.Duration { return robustTTL + time.Duration(r.Intn(5000))*time.Millisecond }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(ctx, c, w, rand.New(rand.NewSource(seed)), logs[w], hold)
		}()
	}
	stopped := false
	stopWorkers := func() {
		if !stopped {
			stopped = true
			stop()
			wg.Wait()
		}
	}
	t.Cleanup(stopWorkers)

	waitGrants := func(n int, d time.Duration, what string) {
		t.Helper()
		base := countGrants(c.rec.history())
		waitFor(t, d, what, func() error {
			if g := countGrants(c.rec.history()) - base; g < n {
				return fmt.Errorf("%d grants so far", g)
			}
			return nil
		})
	}
	waitGrants(10, 30*time.Second, "grants before the first fault")
	phase("workers running")
	for _, name := range faults {
		fp := newFailpoint(name, rng)
		from := c.rec.now()
		fp.Inject(c)
		fp.Heal(c)
		waitGrants(5, 30*time.Second, "grants after healing "+name)
		gap := longestGrantGap(c.rec.history(), from, c.rec.now())
		st.faults[name]++
		if gap > st.gaps[name] {
			st.gaps[name] = gap
		}
		phase(name + " healed")
	}
	// The keeper's lease came through: Held again (after Grace during an
	// outage of the whole cluster), the same lease.
	waitFor(t, 20*time.Second, "the keeper's lease held", func() error {
		if st := kl.State(); st != client.Held {
			return fmt.Errorf("keeper lease %d is %s", kl.ID(), st)
		}
		return nil
	})
	if kl.ID() != kid {
		c.violation(fmt.Sprintf("the keeper's lease %d, renewed all along, became lease %d", kid, kl.ID()))
	}
	rcall := c.rec.now()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	rerr := kl.Release(rctx)
	rcancel()
	rret := c.rec.now()
	if rerr != nil {
		rret = never
	}
	c.rec.add(keeperID, seatInput{kind: opRelease, key: kkey}, done, rcall, rret)
	stopWorkers()
	phase("workers stopped")

	ops := c.rec.history()
	st.ops = len(ops)
	for _, op := range ops {
		if op.Output.(outcome) == unknown {
			st.unknown++
		}
	}
	st.retried, st.minority = int(c.retried.Load()), int(c.minority.Load())
	st.violations, st.logEntries = checkHistory(t, c, ops, append(logs, c.extraLogs...))
	phase("checked")
	c.watch.mu.Lock()
	st.graces = c.watch.graces
	c.watch.mu.Unlock()
	if len(st.violations) > 0 {
		dir := saveArtifacts(t, c.cluster, ops)
		t.Errorf("robustness violations (faults %v), artifacts in %s:\n%s", faults, dir, strings.Join(st.violations, "\n"))
	}
	return st
}

func countGrants(ops []porcupine.Operation) int {
	n := 0
	for _, op := range ops {
		if op.Input.(seatInput).kind == opCheckout && op.Output.(outcome) == granted {
			n++
		}
	}
	return n
}

// checkoutRetrying checks a seat out under request id req, retrying the
// same id while the outcome is unknown (timeout, unavailable), for up to
// robustRetryFor, as a product would. retried says whether it took more
// than one call.
func checkoutRetrying(cl *client.Client, req string) (l *client.Lease, retried bool, err error) {
	retryUntil := time.Now().Add(robustRetryFor)
	for n := 0; ; n++ {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		l, err = cl.Checkout(cctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: robustTTL, RequestID: req})
		cancel()
		if err == nil || errors.Is(err, client.ErrNoSeat) || errors.Is(err, client.ErrLeaseEnded) || time.Now().After(retryUntil) {
			return l, n > 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// record adds a checkout's outcome to the history (with its release when
// granted and held for hold), as seen by client id w.
func (c *chaosCluster) record(ctx context.Context, w int, wl *workerLog, req string, call int64, l *client.Lease, err error, hold time.Duration) {
	in := seatInput{kind: opCheckout, req: req, key: "r:" + req}
	ret := c.rec.now()
	switch {
	case err == nil:
		id := l.ID()
		c.watch.track(l, id)
		in.key = strconv.FormatUint(id, 10)
		c.rec.add(w, in, granted, call, ret)
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		if l.ID() != id {
			c.violation(fmt.Sprintf("worker %d: lease %d became lease %d while held", w, id, l.ID()))
		}
		rcall := c.rec.now()
		rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		rerr := l.Release(rctx)
		cancel()
		rret := c.rec.now()
		if rerr != nil {
			rret = never // the seat frees when the lease expires
		}
		c.rec.add(w, seatInput{kind: opRelease, key: in.key}, done, rcall, rret)
	case errors.Is(err, client.ErrNoSeat):
		c.rec.add(w, in, denied, call, ret)
		c.mu.Lock()
		wl.denied = append(wl.denied, req)
		c.mu.Unlock()
	case errors.Is(err, client.ErrLeaseEnded):
		// Granted to an attempt whose answer was lost, and expired
		// since: held and freed within the op's span.
		c.rec.add(w, in, granted, call, ret)
		c.rec.add(w, seatInput{kind: opExpire, key: in.key}, done, call, ret)
	default:
		c.rec.add(w, in, unknown, call, never)
		c.rec.add(w, seatInput{kind: opExpire, key: in.key}, done, call, never)
	}
}

// work checks a seat out with a fresh request id, holds it for hold(rng)
// and releases it, until ctx ends; after "no seat" it waits 30–100 ms.
func work(ctx context.Context, c *chaosCluster, w int, rng *rand.Rand, wl *workerLog, hold func(*rand.Rand) time.Duration) {
	for n := 0; ctx.Err() == nil; n++ {
		req := fmt.Sprintf("w%d-%d-%x", w, n, rng.Int63())
		call := c.rec.now()
		l, retried, err := checkoutRetrying(wl.c, req)
		if retried {
			c.retried.Add(1)
		}
		c.record(ctx, w, wl, req, call, l, err, hold(rng))
		if errors.Is(err, client.ErrNoSeat) {
			time.Sleep(time.Duration(30+rng.Intn(70)) * time.Millisecond)
		}
	}
}

// minorityWorker checks seats out through a client that knows only a
// member cut off from the other two, with a fresh request id each time
// and no retry of an id while the member is cut off. Any grant is a
// violation (a minority never grants: FlexNet's reason for three
// servers). Checkouts left unanswered are resolved after the heal with
// the same request ids through the whole cluster (counted as retried).
type minorityWorker struct {
	id      int
	victim  *member
	cl      *client.Client
	wl      *workerLog // the resolver client (same identity, every member)
	cancel  context.CancelFunc
	done    chan struct{}
	pending []pendingCheckout
}

type pendingCheckout struct {
	req  string
	call int64
}

func (c *chaosCluster) startMinority(v *member) *minorityWorker {
	id := int(c.nextID.Add(1))
	clientID := fmt.Sprintf("robust-minority-%d", id)
	mw := &minorityWorker{id: id, victim: v, done: make(chan struct{}),
		cl: c.newClient([]string{v.addr}, clientID, int64(id))}
	mw.wl = &workerLog{c: c.newClient(c.addrs, clientID, int64(id))}
	ctx, cancel := context.WithCancel(context.Background())
	mw.cancel = cancel
	var wg sync.WaitGroup
	for g := range minorityLoops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mw.loop(ctx, c, g)
		}()
	}
	go func() { wg.Wait(); close(mw.done) }()
	return mw
}

// minorityLoops is how many checkouts a minority worker keeps in flight.
const minorityLoops = 3

func (mw *minorityWorker) loop(ctx context.Context, c *chaosCluster, g int) {
	for n := 0; ctx.Err() == nil; n++ {
		req := fmt.Sprintf("m%d-%d-%d", mw.id, g, n)
		call := c.rec.now()
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		l, err := mw.cl.Checkout(cctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: robustTTL, RequestID: req})
		ccancel()
		c.minority.Add(1)
		switch {
		case err == nil || errors.Is(err, client.ErrLeaseEnded):
			what := "granted"
			if l != nil {
				what = fmt.Sprintf("granted lease %d", l.ID())
			}
			c.violation(fmt.Sprintf("minority grant: %s, cut off from the other members, %s to request %s (asked at %s, answered at %s)",
				mw.victim.name, what, req, time.Duration(call), time.Duration(c.rec.now())))
			c.record(context.Background(), mw.id, mw.wl, req, call, l, err, 0)
		case errors.Is(err, client.ErrNoSeat):
			c.record(context.Background(), mw.id, mw.wl, req, call, l, err, 0)
		default:
			c.mu.Lock()
			mw.pending = append(mw.pending, pendingCheckout{req, call})
			c.mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the worker before the links are healed: every answer it got
// came from the cut-off member while it was cut off.
func (mw *minorityWorker) stop() {
	mw.cancel()
	<-mw.done
}

// resolve asks the unanswered request ids again through the whole
// cluster and records each as one operation from its first call.
//
// First, a control: the same client, which knows only the member that was
// cut off, must get a definite answer from it now that it is back, so
// that its silence while cut off means something.
func (mw *minorityWorker) resolve(c *chaosCluster) {
	req := fmt.Sprintf("m%d-control", mw.id)
	call := c.rec.now()
	var l *client.Lease
	var err error
	waitFor(c.t, 20*time.Second, "an answer from "+mw.victim.name+" after the heal", func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l, err = mw.cl.Checkout(cctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: robustTTL, RequestID: req})
		if err == nil || errors.Is(err, client.ErrNoSeat) || errors.Is(err, client.ErrLeaseEnded) {
			return nil
		}
		return err
	})
	c.record(context.Background(), mw.id, mw.wl, req, call, l, err, 0)
	for _, p := range mw.pending {
		l, _, err := checkoutRetrying(mw.wl.c, p.req)
		c.retried.Add(1)
		c.record(context.Background(), mw.id, mw.wl, p.req, p.call, l, err, 0)
	}
	c.mu.Lock()
	c.extraLogs = append(c.extraLogs, mw.wl)
	c.mu.Unlock()
}

// checkHistory returns the violations found in ops, in the cluster's
// final state and in its members' logs, and the number of log entries
// compared.
func checkHistory(t *testing.T, c *chaosCluster, ops []porcupine.Operation, logs []*workerLog) ([]string, uint64) {
	var v []string
	c.mu.Lock()
	v = append(v, c.violations...)
	c.mu.Unlock()
	c.watch.mu.Lock()
	v = append(v, c.watch.v...)
	c.watch.mu.Unlock()
	if max, at := maxDefinitelyHeld(ops); max > robustSeats {
		v = append(v, fmt.Sprintf("%d seats definitely held at once (at %s), capacity %d", max, time.Duration(at), robustSeats))
	}
	model := seatModel(robustSeats)
	checkFrom := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, time.Minute)
	t.Logf("porcupine: %v in %s", res, time.Since(checkFrom).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		v = append(v, "history is not linearizable against the seat pool model")
		lastIllegal = &illegal{model, info}
	case porcupine.Unknown:
		t.Logf("porcupine timed out: linearizability not decided")
	}

	// Every lease the cluster lists is known to the history; any leases
	// not matched must be accounted for by checkouts of unknown outcome.
	known := map[string]bool{}
	unknowns := 0
	for _, op := range ops {
		in := op.Input.(seatInput)
		if in.kind == opCheckout && op.Output.(outcome) == granted {
			known[in.key] = true
		}
		if in.kind == opCheckout && op.Output.(outcome) == unknown {
			unknowns++
		}
	}
	var leases []map[string]any
	waitFor(t, 30*time.Second, "usage leases --consistent", func() error {
		out, err := ctlOn(t, c.servers(), "--output", "json", "usage", "leases", "--consistent")
		if err != nil {
			return err
		}
		leases = nil
		return jsonUnmarshal(out, &leases)
	})
	strange := 0
	for _, l := range leases {
		if id := fmt.Sprint(l["lease_id"]); !known[id] {
			strange++
			if strange > unknowns {
				v = append(v, fmt.Sprintf("the cluster lists lease %s, unknown to the history", id))
			}
		}
	}

	// Denials are final: once the pool is empty, every denied request id
	// is asked again through the client that asked it, and must be denied
	// again, never granted.
	waitFor(t, 30*time.Second, "every seat to free", func() error {
		out, err := ctlOn(t, c.servers(), "--output", "json", "usage", "leases", "--consistent")
		if err != nil {
			return err
		}
		var ls []map[string]any
		if err := jsonUnmarshal(out, &ls); err != nil {
			return err
		}
		if len(ls) > 0 {
			return fmt.Errorf("%d leases left", len(ls))
		}
		return nil
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	asked, askFrom := 0, time.Now()
	const askers = 4 // per client: the re-asks share Raft commits
	for _, wl := range logs {
		asked += len(wl.denied)
		for k := range askers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := k; i < len(wl.denied); i += askers {
					req := wl.denied[i]
					l, _, err := checkoutRetrying(wl.c, req)
					switch {
					case err == nil:
						mu.Lock()
						v = append(v, fmt.Sprintf("request %s was answered no seat, then granted lease %d", req, l.ID()))
						mu.Unlock()
						l.Release(context.Background())
					case !errors.Is(err, client.ErrNoSeat):
						mu.Lock()
						v = append(v, fmt.Sprintf("request %s was answered no seat, then %v", req, err))
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("asked %d denied request ids again in %s", asked, time.Since(askFrom).Round(time.Millisecond))

	n, lv := compareLogs(c)
	return append(v, lv...), n
}

// compareLogs is the fuzzy-style check of STYLE.md: every member's Raft
// log holds the same entries up to the smallest applied index among them
// (entries every member has applied are committed, so Raft promises they
// are identical; with a deterministic FSM, every member's state went
// through the same sequence). It stops the members (SIGKILL) and reads
// their Raft logs (WAL); it returns the number of entries compared.
func compareLogs(c *chaosCluster) (uint64, []string) {
	t := c.t
	var common uint64
	waitFor(t, 30*time.Second, "every member's applied index", func() error {
		common = math.MaxUint64
		for _, m := range c.members {
			s, err := c.status(m)
			if err != nil {
				return err
			}
			a, err := strconv.ParseUint(string(s.AppliedIndex), 10, 64)
			if err != nil {
				return fmt.Errorf("%s: applied index %q: %v", m.name, s.AppliedIndex, err)
			}
			common = min(common, a)
		}
		return nil
	})
	for _, m := range c.members {
		m.kill() // what the WAL committed is on disk; no need to wait for a handover
	}
	logs := make([]*raftLog, len(c.members))
	var lo uint64
	for i, m := range c.members {
		l, err := openRaftLog(m)
		if err != nil {
			t.Fatal(err)
		}
		defer l.close()
		logs[i] = l
		lo = max(lo, l.first)
	}
	var v []string
	if lo > common {
		return 0, []string{fmt.Sprintf("no common committed log range: first indexes reach %d, applied index %d", lo, common)}
	}
	for idx := lo; idx <= common; idx++ {
		var want string
		for i, l := range logs {
			e, err := l.entry(idx)
			if err != nil {
				v = append(v, fmt.Sprintf("%s: log entry %d (committed on every member): %v", c.members[i].name, idx, err))
				return idx - lo, v
			}
			if i == 0 {
				want = e
			} else if e != want {
				v = append(v, fmt.Sprintf("log entry %d differs between %s and %s: %s vs %s", idx, c.members[0].name, c.members[i].name, want, e))
				return idx - lo, v
			}
		}
	}
	return common - lo + 1, v
}

// illegal is the model and linearization info of a history porcupine
// refused, for the visualization; lastIllegal is the last one.
type illegal struct {
	model porcupine.Model
	info  porcupine.LinearizationInfo
}

var lastIllegal *illegal

// saveArtifacts writes the history (porcupine's HTML visualization when
// it is not linearizable) and the member logs to $TRIAD_ARTIFACTS, or a
// directory kept after the test when unset; it returns the directory.
func saveArtifacts(t *testing.T, c *cluster, ops []porcupine.Operation) string {
	base := os.Getenv("TRIAD_ARTIFACTS")
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	dir, err := os.MkdirTemp(base, "robustness-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	var b strings.Builder
	m := seatModel(robustSeats)
	for _, op := range ops {
		ret := "never"
		if op.Return != never {
			ret = time.Duration(op.Return).String()
		}
		fmt.Fprintf(&b, "worker %d [%s, %s] %s\n", op.ClientId, time.Duration(op.Call), ret, m.DescribeOperation(op.Input, op.Output))
	}
	os.WriteFile(filepath.Join(dir, "history.txt"), []byte(b.String()), 0o644)
	for _, mb := range c.members {
		os.WriteFile(filepath.Join(dir, mb.name+".log"), []byte(mb.log()), 0o644)
	}
	if il := lastIllegal; il != nil {
		lastIllegal = nil
		if err := porcupine.VisualizePath(il.model, il.info, filepath.Join(dir, "history.html")); err != nil {
			t.Logf("visualization: %v", err)
		}
	}
	return dir
}

// runCampaign runs randomized scenarios of 1–4 faults until CHAOS_DURATION
// is spent and prints a table. CHAOS_FAULTS (comma-separated names) draws
// the faults from those only.
func runCampaign(t *testing.T) {
	d := 10 * time.Minute
	if s := os.Getenv("CHAOS_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
	}
	pool := failpointNames
	if s := os.Getenv("CHAOS_FAULTS"); s != "" {
		pool = strings.Split(s, ",")
		for _, name := range pool {
			if !slices.Contains(failpointNames, name) {
				t.Fatalf("CHAOS_FAULTS: no fault %q (faults: %s)", name, strings.Join(failpointNames, ","))
			}
		}
	}
	rng := rand.New(rand.NewSource(seed))
	total := runStats{faults: map[string]int{}, gaps: map[string]time.Duration{}}
	runs := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		var faults []string
		for i := 0; i < 1+rng.Intn(4); i++ {
			faults = append(faults, pool[rng.Intn(len(pool))])
		}
		runs++
		var st runStats
		t.Run(fmt.Sprintf("run%d", runs), func(t *testing.T) {
			st = runScenario(t, rand.New(rand.NewSource(rng.Int63())), faults)
		})
		total.ops += st.ops
		total.unknown += st.unknown
		total.retried += st.retried
		total.minority += st.minority
		total.graces += st.graces
		total.logEntries += st.logEntries
		total.violations = append(total.violations, st.violations...)
		for k, n := range st.faults {
			total.faults[k] += n
		}
		for k, g := range st.gaps {
			if g > total.gaps[k] {
				total.gaps[k] = g
			}
		}
	}
	pct := func(n int) float64 {
		if total.ops == 0 {
			return 0
		}
		return 100 * float64(n) / float64(total.ops)
	}
	fmt.Printf("\nchaos campaign: seed %d, duration %s\n", seed, d)
	fmt.Printf("%-30s %v\n", "runs", runs)
	fmt.Printf("%-30s %v\n", "operations", total.ops)
	fmt.Printf("%-30s %.2f%%\n", "indeterminate share", pct(total.unknown))
	fmt.Printf("%-30s %d (%.2f%%)\n", "retried with same request id", total.retried, pct(total.retried))
	fmt.Printf("%-30s %d\n", "minority checkouts", total.minority)
	fmt.Printf("%-30s %d\n", "lease grace periods entered", total.graces)
	fmt.Printf("%-30s %d\n", "log entries compared", total.logEntries)
	for _, name := range failpointNames {
		fmt.Printf("%-30s %d (longest gap without a grant %s)\n", "faults "+name, total.faults[name], total.gaps[name].Round(time.Millisecond))
	}
	fmt.Printf("%-30s %d\n", "violations", len(total.violations))
}
