package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/triadlm/triad/client"
)

// The robustness suite (issue 11 points 9 and 10): workers check seats out
// of a small pool and give them back while failpoints kill and pause
// members; the recorded history is checked for linearizability against
// seatModel and for the invariants porcupine cannot see (denials are
// final, every lease the cluster lists is known to the history).
//
// As a normal test it runs one short fixed-seed pass per fault type.
// With TRIAD_CHAOS=1 (make chaos) it runs a randomized campaign for
// CHAOS_DURATION (default 10m), seeded by CHAOS_SEED, and prints a table.

const (
	robustSeats   = 2
	robustWorkers = 6
	robustTTL     = 3 * time.Second
)

func TestRobustness(t *testing.T) {
	if os.Getenv("TRIAD_CHAOS") != "" {
		t.Run("campaign", runCampaign)
		return
	}
	for i, name := range failpointNames {
		t.Run(name, func(t *testing.T) {
			st := runScenario(t, rand.New(rand.NewSource(int64(i+1))), []string{name})
			t.Logf("%s", st)
		})
	}
}

// startClusterWith is startCluster with extra member arguments; every
// member also reads a test clock step from clockFile(m).
func startClusterWith(t *testing.T, extra ...string) *cluster {
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		m := prepareMember(t, n, "127.0.0.1", filepath.Join(c.dir, "vendor.pub"))
		m.extra = append(append([]string(nil), extra...), "--test-clock-file", clockFile(m))
		m.start()
		c.members = append(c.members, m)
	}
	return c
}

// runStats is what one scenario saw.
type runStats struct {
	ops, unknown int
	faults       map[string]int
	gaps         map[string]time.Duration // longest gap without a grant, per fault
	violations   []string
}

func (s runStats) String() string {
	return fmt.Sprintf("ops=%d unknown=%d faults=%v gaps=%v violations=%d", s.ops, s.unknown, s.faults, s.gaps, len(s.violations))
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
	c := startClusterWith(t, "--lease-ttl", robustTTL.String())
	c.form()
	c.enroll(c.issue("cad", "--feature", fmt.Sprintf("cad:1:%d", robustSeats), "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	addrs := strings.Split(c.servers(), ",")

	rec := newRecorder()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logs := make([]*workerLog, robustWorkers)
	for w := range logs {
		cl, err := client.New(addrs, tlsOption(t), client.WithCallTimeout(time.Second),
			client.WithIdentity("robust", "host", int64(w+1), fmt.Sprintf("robust-%d", w)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		logs[w] = &workerLog{c: cl}
		seed := rng.Int63()
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(ctx, w, rand.New(rand.NewSource(seed)), logs[w], rec)
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
		base := countGrants(rec.history())
		waitFor(t, d, what, func() error {
			if g := countGrants(rec.history()) - base; g < n {
				return fmt.Errorf("%d grants so far", g)
			}
			return nil
		})
	}
	waitGrants(10, 30*time.Second, "grants before the first fault")
	for _, name := range faults {
		fp := newFailpoint(name)
		from := rec.now()
		fp.Inject(c)
		fp.Heal(c)
		waitGrants(5, 30*time.Second, "grants after healing "+name)
		gap := longestGrantGap(rec.history(), from, rec.now())
		st.faults[name]++
		if gap > st.gaps[name] {
			st.gaps[name] = gap
		}
	}
	stopWorkers()

	ops := rec.history()
	st.ops = len(ops)
	for _, op := range ops {
		if op.Output.(outcome) == unknown {
			st.unknown++
		}
	}
	st.violations = checkHistory(t, c, ops, logs)
	if len(st.violations) > 0 {
		dir := saveArtifacts(t, c, ops)
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

// work checks a seat out with a fresh request id, holds it briefly and
// releases it, until ctx ends. A checkout whose outcome is unknown is
// retried with the same request id for a while (as a product would), so
// most end definite; the op spans from the first attempt to the answer.
func work(ctx context.Context, w int, rng *rand.Rand, wl *workerLog, rec *recorder) {
	for n := 0; ctx.Err() == nil; n++ {
		req := fmt.Sprintf("w%d-%d-%x", w, n, rng.Int63())
		in := seatInput{kind: opCheckout, req: req, key: "r:" + req}
		call := rec.now()
		var l *client.Lease
		var err error
		retryUntil := time.Now().Add(15 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			l, err = wl.c.Checkout(cctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: robustTTL, RequestID: req})
			cancel()
			if err == nil || errors.Is(err, client.ErrNoSeat) || errors.Is(err, client.ErrLeaseEnded) || time.Now().After(retryUntil) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		ret := rec.now()
		switch {
		case err == nil:
			in.key = strconv.FormatUint(l.ID(), 10)
			rec.add(w, in, granted, call, ret)
			time.Sleep(time.Duration(50+rng.Intn(150)) * time.Millisecond)
			rcall := rec.now()
			rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			rerr := l.Release(rctx)
			cancel()
			rret := rec.now()
			if rerr != nil {
				rret = never // the seat frees when the lease expires
			}
			rec.add(w, seatInput{kind: opRelease, key: in.key}, done, rcall, rret)
		case errors.Is(err, client.ErrNoSeat):
			rec.add(w, in, denied, call, ret)
			wl.denied = append(wl.denied, req)
			time.Sleep(time.Duration(10+rng.Intn(40)) * time.Millisecond)
		case errors.Is(err, client.ErrLeaseEnded):
			// Granted to an attempt whose answer was lost, and expired
			// since: held and freed within the op's span.
			rec.add(w, in, granted, call, ret)
			rec.add(w, seatInput{kind: opExpire, key: in.key}, done, call, ret)
		default:
			rec.add(w, in, unknown, call, never)
			rec.add(w, seatInput{kind: opExpire, key: in.key}, done, call, never)
		}
	}
}

// checkHistory returns the violations found in ops and in the cluster's
// final state.
func checkHistory(t *testing.T, c *cluster, ops []porcupine.Operation, logs []*workerLog) []string {
	var v []string
	if max, at := maxDefinitelyHeld(ops); max > robustSeats {
		v = append(v, fmt.Sprintf("%d seats definitely held at once (at %s), capacity %d", max, time.Duration(at), robustSeats))
	}
	model := seatModel(robustSeats)
	res, info := porcupine.CheckOperationsVerbose(model, ops, time.Minute)
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

	// Denials are final: once the pool is empty, each denied request id
	// (a sample per worker) is denied again, never granted.
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
	for _, wl := range logs {
		sample := wl.denied
		if len(sample) > 5 {
			sample = sample[len(sample)-5:]
		}
		for _, req := range sample {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			l, err := wl.c.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: robustTTL, RequestID: req})
			cancel()
			switch {
			case err == nil:
				v = append(v, fmt.Sprintf("request %s was answered no seat, then granted lease %d", req, l.ID()))
				l.Release(context.Background())
			case !errors.Is(err, client.ErrNoSeat):
				t.Logf("re-asking denied request %s: %v", req, err)
			}
		}
	}
	return v
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
// is spent and prints a table.
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
	rng := rand.New(rand.NewSource(seed))
	total := runStats{faults: map[string]int{}, gaps: map[string]time.Duration{}}
	runs := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		var faults []string
		for i := 0; i < 1+rng.Intn(4); i++ {
			faults = append(faults, failpointNames[rng.Intn(len(failpointNames))])
		}
		runs++
		var st runStats
		t.Run(fmt.Sprintf("run%d", runs), func(t *testing.T) {
			st = runScenario(t, rand.New(rand.NewSource(rng.Int63())), faults)
		})
		total.ops += st.ops
		total.unknown += st.unknown
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
	share := 0.0
	if total.ops > 0 {
		share = 100 * float64(total.unknown) / float64(total.ops)
	}
	fmt.Printf("\nchaos campaign: seed %d, duration %s\n", seed, d)
	fmt.Printf("%-28s %v\n", "runs", runs)
	fmt.Printf("%-28s %v\n", "operations", total.ops)
	fmt.Printf("%-28s %.2f%%\n", "indeterminate share", share)
	for _, name := range failpointNames {
		fmt.Printf("%-28s %d (longest gap without a grant %s)\n", "faults "+name, total.faults[name], total.gaps[name].Round(time.Millisecond))
	}
	fmt.Printf("%-28s %d\n", "violations", len(total.violations))
}
