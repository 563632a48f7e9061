package admin

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// benchConfig is one `triadctl bench` run.
type benchConfig struct {
	Workload, Target, Feature string
	Version                   uint32
	Clients, Conns, Leases    int
	Duration, RenewEvery, TTL time.Duration
	Unary                     bool // cycle: client.WithUnaryCalls
	// KillLeaderAt (hold): SIGKILL the leader this long into the
	// measured phase and measure how long renewals stop (failover).
	KillLeaderAt time.Duration
	// KeepLeases (renew, hold): leave the leases held at the end (they
	// expire after TTL), e.g. to time a member's restart with them.
	KeepLeases bool

	targets    [][]string // per connection: the address(es) it may use
	clientOpts []client.Option
	creds      credentials.TransportCredentials
	procDir    string
}

func (cfg *benchConfig) check() error {
	switch {
	case cfg.Workload != workloadCycle && cfg.Workload != workloadRenew && cfg.Workload != workloadHold:
		return fmt.Errorf("--workload %q: want cycle, renew or hold", cfg.Workload)
	case cfg.Clients < 1:
		return fmt.Errorf("--clients must be at least 1")
	case cfg.Conns < 1:
		return fmt.Errorf("--conns must be at least 1")
	case cfg.Duration <= 0:
		return fmt.Errorf("--duration must be positive")
	}
	if cfg.Conns > cfg.Clients {
		cfg.Conns = cfg.Clients // a connection without a client would measure nothing
	}
	if cfg.Workload == workloadCycle {
		if cfg.KillLeaderAt != 0 || cfg.KeepLeases {
			return fmt.Errorf("--kill-leader-at is for the hold workload, --keep-leases for renew and hold")
		}
		return nil
	}
	if cfg.KillLeaderAt != 0 && cfg.Workload != workloadHold {
		// renew's clients would spin on the dead member's connections.
		return fmt.Errorf("--kill-leader-at is for the hold workload")
	}
	switch {
	case cfg.Leases < cfg.Clients:
		return fmt.Errorf("--leases %d is fewer than --clients %d: every client holds at least one lease", cfg.Leases, cfg.Clients)
	case cfg.TTL < time.Second:
		return fmt.Errorf("--ttl %s: at least 1s", cfg.TTL)
	case cfg.Workload == workloadHold && (cfg.RenewEvery <= 0 || cfg.RenewEvery >= cfg.TTL):
		return fmt.Errorf("--renew-every %s must be positive and shorter than --ttl %s, or the leases expire", cfg.RenewEvery, cfg.TTL)
	case cfg.KillLeaderAt < 0 || cfg.KillLeaderAt >= cfg.Duration:
		return fmt.Errorf("--kill-leader-at %s must fall inside --duration %s", cfg.KillLeaderAt, cfg.Duration)
	}
	return nil
}

// opTimeout bounds one checkout, renewal or release of the benchmark.
const opTimeout = 10 * time.Second

// runBench runs cfg.Workload and measures the members (those with a pid)
// around the measured phase.
func runBench(ctx context.Context, cfg benchConfig, members []*BenchMember) (*BenchResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(cfg.targets) == 0 {
		return nil, fmt.Errorf("bench: no member address to connect to")
	}
	r := newBenchResult(cfg)
	r.Members = members
	meter := &benchMeter{procDir: cfg.procDir, members: members, r: r}
	var err error
	if cfg.Workload == workloadCycle {
		err = runCycle(ctx, cfg, r, meter)
	} else {
		err = runRenew(ctx, cfg, r, meter)
	}
	if err != nil {
		return r, err
	}
	meter.finish()
	return r, nil
}

// benchMeter samples the members' /proc at the phase boundaries.
type benchMeter struct {
	procDir string
	members []*BenchMember
	r       *BenchResult
	start   time.Time
}

// idle records each member's RSS before the leases are taken.
func (m *benchMeter) idle() {
	for _, b := range m.members {
		if s, ok := m.sample(b); ok {
			b.RSSIdleBytes = s.rssBytes
		}
	}
}

// begin starts the measured phase.
func (m *benchMeter) begin() {
	m.r.LoadStart = loadAverage(m.procDir)
	for _, b := range m.members {
		if s, ok := m.sample(b); ok {
			b.cpuStart, b.RSSStartBytes = s.cpuSeconds, s.rssBytes
		}
	}
	m.start = time.Now()
}

// end closes the measured phase.
func (m *benchMeter) end() {
	m.r.Seconds = time.Since(m.start).Seconds()
	m.r.LoadEnd = loadAverage(m.procDir)
	for _, b := range m.members {
		if s, ok := m.sample(b); ok {
			b.CPUSeconds, b.RSSEndBytes = s.cpuSeconds-b.cpuStart, s.rssBytes
		}
	}
}

// sample reads one member's /proc; a member that went away (or was never
// here) is left out of the sums from then on.
func (m *benchMeter) sample(b *BenchMember) (procSample, bool) {
	if b.Pid == 0 {
		return procSample{}, false
	}
	s, err := readProc(m.procDir, b.Pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "triadctl bench: member %s (pid %d): %v; its CPU and memory are left out\n", b.Name, b.Pid, err)
		b.Pid = 0
		return procSample{}, false
	}
	return s, true
}

// finish computes the server-side figures.
func (m *benchMeter) finish() {
	r := m.r
	ops := r.Checkouts
	if r.Workload != workloadCycle {
		ops = r.Renewals
	}
	for _, b := range m.members {
		if b.Pid == 0 {
			continue
		}
		r.MembersMeasured++
		r.ServerCPUSeconds += b.CPUSeconds
		if b.RSSIdleBytes > 0 && r.Leases > 0 {
			b.RSSPerLeaseAfterSetupBytes = float64(b.RSSStartBytes-b.RSSIdleBytes) / float64(r.Leases)
			// hold is the steady state: what the leases cost is what the
			// member keeps at the end. renew renews back to back, and its
			// end RSS is that load's garbage, not the leases.
			b.RSSPerLeaseBytes = b.RSSPerLeaseAfterSetupBytes
			if r.Workload == workloadHold {
				b.RSSPerLeaseBytes = float64(b.RSSEndBytes-b.RSSIdleBytes) / float64(r.Leases)
			}
		}
	}
	if ops > 0 {
		r.ServerCPUPer1000Ops = r.ServerCPUSeconds * 1000 / float64(ops)
	}
	if r.Seconds > 0 {
		r.ServerCores = r.ServerCPUSeconds / r.Seconds
	}
}

// errCounter counts errors by kind ("checkout: Unavailable").
type errCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errCounter) add(what string, err error) {
	e.count(what + ": " + status.Code(err).String())
}

// count counts one error of the kind key.
func (e *errCounter) count(key string) {
	e.mu.Lock()
	e.m[key]++
	e.mu.Unlock()
}

func runCycle(ctx context.Context, cfg benchConfig, r *BenchResult, meter *benchMeter) error {
	opts := append([]client.Option{client.WithRenewInterval(time.Hour)}, cfg.clientOpts...)
	if cfg.Unary {
		opts = append(opts, client.WithUnaryCalls())
	}
	clients := make([]*client.Client, cfg.Conns)
	for i := range clients {
		cl, err := client.New(cfg.targets[i], opts...)
		if err != nil {
			return err
		}
		defer cl.Close()
		clients[i] = cl
	}
	type sample struct{ checkout, release time.Duration }
	var (
		mu      sync.Mutex
		samples []sample
		errs    = &errCounter{m: r.Errors}
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	meter.begin()
	for i := 0; i < cfg.Clients; i++ {
		cl := clients[i%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]sample, 0, 4096)
			for ctx.Err() == nil {
				// The duration bounds when a cycle may start, not the cycle
				// itself: a checkout cut off by the deadline could take a
				// seat and leave it held until its TTL runs out.
				t0 := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), opTimeout)
				lease, err := cl.Checkout(cctx, client.CheckoutRequest{Feature: cfg.Feature, Version: cfg.Version})
				ccancel()
				t1 := time.Now()
				if err != nil {
					errs.add("checkout", err)
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				err = lease.Release(rctx)
				rcancel()
				if err != nil {
					errs.add("release", err)
					continue
				}
				local = append(local, sample{t1.Sub(t0), time.Since(t1)})
			}
			mu.Lock()
			samples = append(samples, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	meter.end()
	r.Checkouts = len(samples)
	if len(samples) == 0 {
		return fmt.Errorf("no checkout succeeded in %s: %v", cfg.Duration, r.Errors)
	}
	r.CheckoutsPerS = float64(len(samples)) / r.Seconds
	co := make([]time.Duration, len(samples))
	rel := make([]time.Duration, len(samples))
	cyc := make([]time.Duration, len(samples))
	for i, s := range samples {
		co[i], rel[i], cyc[i] = s.checkout, s.release, s.checkout+s.release
	}
	for _, x := range [][]time.Duration{co, rel, cyc} {
		slices.Sort(x)
	}
	r.CheckoutP50Ms, r.CheckoutP99Ms, r.CheckoutMaxMs = ms(pct(co, 50)), ms(pct(co, 99)), ms(co[len(co)-1])
	r.ReleaseP50Ms, r.ReleaseP99Ms = ms(pct(rel, 50)), ms(pct(rel, 99))
	r.CycleP99Ms = ms(pct(cyc, 99))
	return nil
}

// benchHolder is one client of the renew and hold workloads: a client
// process's worth of leases, renewed in one Renew call as the client
// library does.
type benchHolder struct {
	id      string
	rpc     triadv1.LicensingClient
	ids     []uint64
	secrets [][]byte
}

// runRenew takes cfg.Leases leases (split over the clients), then renews
// them (renew: back to back; hold: each client every cfg.RenewEvery,
// the clients' rounds spread evenly over the interval) for cfg.Duration,
// then releases them. It talks to the Licensing service directly, not
// through package client, to control when each renewal is sent.
func runRenew(ctx context.Context, cfg benchConfig, r *BenchResult, meter *benchMeter) error {
	conns := make([]*grpc.ClientConn, cfg.Conns)
	for i := range conns {
		conn, err := grpc.NewClient(cfg.targets[i][0], grpc.WithTransportCredentials(cfg.creds),
			grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
		if err != nil {
			return err
		}
		defer conn.Close()
		conns[i] = conn
	}
	holders := make([]*benchHolder, cfg.Clients)
	for i := range holders {
		n := cfg.Leases / cfg.Clients
		if i < cfg.Leases%cfg.Clients {
			n++
		}
		holders[i] = &benchHolder{id: rand.Text(), rpc: triadv1.NewLicensingClient(conns[i%len(conns)]),
			ids: make([]uint64, 0, n), secrets: make([][]byte, 0, n)}
	}
	errs := &errCounter{m: r.Errors}
	var victim *BenchMember
	if cfg.KillLeaderAt > 0 {
		for _, m := range meter.members {
			if m.Role == "leader" && m.Pid > 0 {
				victim = m
			}
		}
		if victim == nil {
			return fmt.Errorf("bench: --kill-leader-at needs the leader's process on this machine (members: %s)", roles(meter.members))
		}
	}
	meter.idle()
	setup := time.Now()
	// Release what was taken, whatever happens next (unless kept).
	if !cfg.KeepLeases {
		defer releaseAll(holders, errs)
	}
	if err := takeLeases(ctx, cfg, holders); err != nil {
		return err
	}
	r.SetupSeconds = time.Since(setup).Seconds()

	var (
		mu    sync.Mutex
		lat   []time.Duration
		done  []renewSpan // successful calls (failover figures)
		total int
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	meter.begin()
	start := time.Now()
	killed := func() time.Time { return time.Time{} }
	if victim != nil {
		killed = killAfter(ctx, victim, cfg.KillLeaderAt, errs)
	}
	for i, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			var spans []renewSpan
			renewed := 0
			next := start.Add(time.Duration(i) * cfg.RenewEvery / time.Duration(len(holders)))
			for ctx.Err() == nil {
				if cfg.Workload == workloadHold {
					t := time.NewTimer(time.Until(next))
					select {
					case <-ctx.Done():
						t.Stop()
						continue
					case <-t.C:
					}
					next = next.Add(cfg.RenewEvery)
				}
				t0 := time.Now()
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				resp, err := h.rpc.Renew(rctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: h.ids, LeaseSecrets: h.secrets})
				rcancel()
				if err != nil {
					errs.add("renew", err)
					continue
				}
				now := time.Now()
				local = append(local, now.Sub(t0))
				spans = append(spans, renewSpan{t0, now})
				for _, res := range resp.GetResults() {
					if res.GetOk() {
						renewed++
					} else {
						errs.count("renew: lease lost")
					}
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			done = append(done, spans...)
			total += renewed
			mu.Unlock()
		}()
	}
	wg.Wait()
	meter.end()
	cancel()
	killedAt := killed()
	r.Renewals, r.RenewCalls = total, len(lat)
	if cfg.KeepLeases {
		r.LeasesKept = cfg.Leases
	}
	r.MaxRenewGapMs = ms(maxGap(done, start, start.Add(cfg.Duration)))
	if !killedAt.IsZero() {
		r.KilledMember = victim.Name
		r.KilledAtSeconds = killedAt.Sub(start).Seconds()
		if d, ok := recovery(done, killedAt); ok {
			r.RecoveryMs = ms(d)
		} else {
			r.RecoveryMs = -1
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("no renewal succeeded in %s: %v", cfg.Duration, r.Errors)
	}
	r.RenewalsPerS = float64(total) / r.Seconds
	slices.Sort(lat)
	r.RenewP50Ms, r.RenewP99Ms, r.RenewMaxMs = ms(pct(lat, 50)), ms(pct(lat, 99)), ms(lat[len(lat)-1])
	return nil
}

// takeLeases checks out every holder's share, the holders in parallel.
// A checkout that gets no answer is retried with the same request id
// (idempotent); a denial ends the benchmark with a clear error.
func takeLeases(ctx context.Context, cfg benchConfig, holders []*benchHolder) error {
	host, _ := os.Hostname()
	errc := make(chan error, len(holders))
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Taking many leases can outlast their TTL: the leases taken so
			// far are renewed every TTL/3 meanwhile, as a client would.
			renewed := time.Now()
			for range cap(h.ids) {
				if time.Since(renewed) > cfg.TTL/3 {
					h.renewAll(ctx)
					renewed = time.Now()
				}
				req := &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: rand.Text(), Feature: cfg.Feature,
					Version: cfg.Version, User: "triadctl-bench", Host: host, Pid: int64(os.Getpid()), ClientId: h.id,
					TtlSeconds: uint32((cfg.TTL + time.Second - 1) / time.Second)}
				for {
					if ctx.Err() != nil {
						errc <- ctx.Err()
						return
					}
					cctx, cancel := context.WithTimeout(ctx, opTimeout)
					resp, err := h.rpc.Checkout(cctx, req)
					cancel()
					if err == nil {
						h.ids = append(h.ids, resp.GetLease().GetLeaseId())
						h.secrets = append(h.secrets, resp.GetLeaseSecret())
						break
					}
					switch status.Code(err) {
					case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
						continue // same request id: granted at most once
					case codes.ResourceExhausted:
						errc <- fmt.Errorf("bench: checkout of lease %d of %d: %v: the license must have at least --leases %d seats of %s", len(h.ids)+1, cap(h.ids), status.Convert(err).Message(), cfg.Leases, cfg.Feature)
					default:
						errc <- fmt.Errorf("bench: checkout: %v", status.Convert(err).Message())
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	// Every lease starts the measured phase freshly renewed.
	for _, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.renewAll(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// renewAll renews the holder's leases outside the measured phase (set-up).
func (h *benchHolder) renewAll(ctx context.Context) {
	if len(h.ids) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, _ = h.rpc.Renew(rctx, &triadv1.RenewRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: h.ids, LeaseSecrets: h.secrets})
}

// releaseAll releases every lease taken, 1,000 per call.
func releaseAll(holders []*benchHolder, errs *errCounter) {
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(h.ids); i += 1000 {
				j := min(i+1000, len(h.ids))
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				_, err := h.rpc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: h.ids[i:j], LeaseSecrets: h.secrets[i:j]})
				cancel()
				if err != nil {
					errs.add("release", err)
				}
			}
		}()
	}
	wg.Wait()
}

// renewSpan is one successful Renew call: when it was sent and answered.
type renewSpan struct{ sent, answered time.Time }

// killAfter SIGKILLs m's process d from now unless ctx ends first. The
// function it returns waits for that and gives the time of the kill (zero:
// none).
func killAfter(ctx context.Context, m *BenchMember, d time.Duration, errs *errCounter) func() time.Time {
	var at time.Time
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		now := time.Now()
		if err := syscall.Kill(int(m.Pid), syscall.SIGKILL); err != nil {
			errs.count("kill leader: " + err.Error())
			return
		}
		at = now
	}()
	return func() time.Time {
		<-ended
		return at
	}
}

// recovery is how long after the kill renewals flowed again: until the
// answer to the first successful call sent after the kill (a call sent
// before it may have been committed by the old leader).
func recovery(spans []renewSpan, killedAt time.Time) (time.Duration, bool) {
	var first time.Time
	for _, s := range spans {
		if !s.sent.Before(killedAt) && (first.IsZero() || s.answered.Before(first)) {
			first = s.answered
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return first.Sub(killedAt), true
}

// maxGap is the longest time in [from, to] with no successful call
// answered.
func maxGap(spans []renewSpan, from, to time.Time) time.Duration {
	ts := make([]time.Time, 0, len(spans)+2)
	ts = append(ts, from)
	for _, s := range spans {
		ts = append(ts, s.answered)
	}
	ts = append(ts, to)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap
}
