package admin

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/internal/buildinfo"
)

// The workloads of `triadctl bench` (docs/performance.md).
const (
	workloadCycle = "cycle" // checkout then release, back to back
	workloadRenew = "renew" // hold --leases leases and renew them back to back
	workloadHold  = "hold"  // hold --leases leases, each client renewing every --renew-every
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "load the cluster (workload cycle, renew or hold); print throughput, latency and the members' CPU and memory",
		Description: "Workloads: cycle (each client checks out and releases, back to back), renew (check out --leases\n" +
			"leases, then each client renews its share in one call, back to back), hold (check out --leases leases,\n" +
			"then each client renews its share every --renew-every, like the client library: the steady state).\n" +
			"--target all puts connection i on member i mod 3 (followers forward to the leader), leader or\n" +
			"follower puts every connection there. --clients share --conns gRPC connections. Server CPU and RSS\n" +
			"are read from /proc for members on this machine (their pid comes from `server show`).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "feature", Required: true, Usage: "feature to check out"},
			&cli.UintFlag{Name: "version", Usage: "feature version to ask for (0: any)"},
			&cli.StringFlag{Name: "workload", Value: workloadCycle, Usage: "cycle, renew or hold"},
			&cli.StringFlag{Name: "target", Value: "all", Usage: "members the connections go to: all, leader or follower"},
			&cli.IntFlag{Name: "clients", Value: 64, Usage: "concurrent clients (client processes for hold)"},
			&cli.IntFlag{Name: "conns", Value: 8, Usage: "gRPC connections the clients share (client i uses connection i mod conns)"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "measured time"},
			&cli.IntFlag{Name: "leases", Value: 10000, Usage: "renew, hold: leases held (split evenly over the clients)"},
			&cli.DurationFlag{Name: "renew-every", Value: 10 * time.Second, Usage: "hold: how often each client renews its leases"},
			&cli.DurationFlag{Name: "ttl", Value: 30 * time.Second, Usage: "renew, hold: TTL of the leases taken"},
			&cli.BoolFlag{Name: "unary", Usage: "cycle: one unary RPC per checkout and release instead of the clients' Session streams (for comparisons)"},
			&cli.StringFlag{Name: "json-out", Usage: "also write the figures as JSON to this file"},
			&cli.DurationFlag{Name: "kill-leader-at", Usage: "hold: SIGKILL the leader (its process must run on this machine) this long into the measured time, and report how long renewals stopped"},
			&cli.BoolFlag{Name: "keep-leases", Usage: "renew, hold: leave the leases held at the end (they expire after --ttl), e.g. to time a member's restart with them"},
			// Performance work: write a CPU profile of the bench itself.
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile of triadctl to this file"},
		},
		Action: func(c *cli.Context) error {
			if p := c.String("cpuprofile"); p != "" {
				f, err := os.Create(p)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			cfg := benchConfig{
				Workload: c.String("workload"), Target: c.String("target"), Feature: c.String("feature"),
				Version: uint32(c.Uint("version")), Clients: c.Int("clients"), Conns: c.Int("conns"),
				Duration: c.Duration("duration"), Leases: c.Int("leases"), RenewEvery: c.Duration("renew-every"),
				TTL: c.Duration("ttl"), Unary: c.Bool("unary"), KillLeaderAt: c.Duration("kill-leader-at"),
				KeepLeases: c.Bool("keep-leases"), procDir: "/proc",
			}
			if err := cfg.check(); err != nil {
				return err
			}
			members, err := discoverMembers(c, cfg.procDir)
			if err != nil {
				if cfg.Target != "all" {
					return fmt.Errorf("bench: finding the members' roles for --target %s: %w", cfg.Target, err)
				}
				// Without admin access the load still runs; only the
				// members' CPU and memory go unmeasured.
				fmt.Fprintf(errWriter(c), "triadctl bench: members' roles and pids unknown (%v); server CPU and memory not measured\n", err)
				members = nil
				for _, a := range servers(c) {
					members = append(members, &BenchMember{Address: a, Role: "unknown"})
				}
			}
			if cfg.targets, err = benchTargets(members, cfg.Target, cfg.Conns); err != nil {
				return err
			}
			if cfg.clientOpts, err = clientOptions(c); err != nil {
				return err
			}
			if cfg.creds, err = transportCredentials(c); err != nil {
				return err
			}
			r, err := runBench(c.Context, cfg, members)
			if err != nil {
				return err
			}
			if p := c.String("json-out"); p != "" {
				b, err := json.MarshalIndent(r, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("--json-out: %w", err)
				}
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			fmt.Fprint(stdout(c), r.String())
			return nil
		},
	}
}

// BenchResult is what `triadctl bench` prints. Latencies are of one
// checkout and one release (cycle) or of one Renew call (renew, hold).
type BenchResult struct {
	Workload string `json:"workload"`
	Target   string `json:"target"`
	// Tool is the triadctl build that measured (version and commit).
	Tool    string `json:"tool"`
	Clients int    `json:"clients"`
	Conns   int    `json:"conns"`
	// Unary: cycle with one unary RPC per call (--unary), not Session streams.
	Unary   bool    `json:"unary,omitempty"`
	Leases  int     `json:"leases,omitempty"`
	Seconds float64 `json:"seconds"`
	Cores   int     `json:"cores"`
	// Load averages (1 min) of this machine when the measured phase began
	// and ended: figures taken under different loads compare badly.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`

	// cycle
	Checkouts     int     `json:"checkouts,omitempty"`
	CheckoutsPerS float64 `json:"checkouts_per_second,omitempty"`
	CheckoutP50Ms float64 `json:"checkout_p50_ms,omitempty"`
	CheckoutP99Ms float64 `json:"checkout_p99_ms,omitempty"`
	CheckoutMaxMs float64 `json:"checkout_max_ms,omitempty"`
	ReleaseP50Ms  float64 `json:"release_p50_ms,omitempty"`
	ReleaseP99Ms  float64 `json:"release_p99_ms,omitempty"`
	CycleP99Ms    float64 `json:"cycle_p99_ms,omitempty"`

	// renew, hold: Renewals counts leases renewed (RenewCalls calls).
	RenewEverySeconds float64 `json:"renew_every_seconds,omitempty"`
	Renewals          int     `json:"renewals,omitempty"`
	RenewCalls        int     `json:"renew_calls,omitempty"`
	RenewalsPerS      float64 `json:"renewals_per_second,omitempty"`
	RenewP50Ms        float64 `json:"renew_p50_ms,omitempty"`
	RenewP99Ms        float64 `json:"renew_p99_ms,omitempty"`
	RenewMaxMs        float64 `json:"renew_max_ms,omitempty"`
	SetupSeconds      float64 `json:"setup_seconds,omitempty"`
	// MaxRenewGapMs: the longest time in the measured phase with no
	// successful Renew answered.
	MaxRenewGapMs float64 `json:"max_renew_gap_ms,omitempty"`
	// --kill-leader-at: the member killed, when (seconds into the measured
	// phase), and how long until the answer to the first successful Renew
	// sent after the kill (-1: none came).
	KilledMember    string  `json:"killed_member,omitempty"`
	KilledAtSeconds float64 `json:"killed_at_seconds,omitempty"`
	RecoveryMs      float64 `json:"recovery_ms,omitempty"`
	// LeasesKept: --keep-leases left this many leases held at the end.
	LeasesKept int `json:"leases_kept,omitempty"`

	// Server side, summed over the members measured (those on this
	// machine): CPU seconds in the measured phase, per 1,000 operations
	// (cycles or lease renewals), and as cores busy on average.
	MembersMeasured     int            `json:"members_measured"`
	ServerCPUSeconds    float64        `json:"server_cpu_seconds"`
	ServerCPUPer1000Ops float64        `json:"server_cpu_seconds_per_1000_ops"`
	ServerCores         float64        `json:"server_cores"`
	Members             []*BenchMember `json:"members"`
	Errors              map[string]int `json:"errors"`
}

// opName is what one operation of the workload is.
func (r *BenchResult) opName() string {
	if r.Workload == workloadCycle {
		return "cycles"
	}
	return "renewals"
}

func (r *BenchResult) String() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	switch r.Workload {
	case workloadCycle:
		calls := "Session streams"
		if r.Unary {
			calls = "unary calls"
		}
		p("workload cycle, target %s: %d clients on %d connections (%s), %.1f s, %d cores on this machine, load %.2f → %.2f\n",
			r.Target, r.Clients, r.Conns, calls, r.Seconds, r.Cores, r.LoadStart, r.LoadEnd)
		p("checkouts/s %.0f (%d checkout+release cycles)\n", r.CheckoutsPerS, r.Checkouts)
		p("checkout latency ms: p50 %.2f  p99 %.2f  max %.2f\n", r.CheckoutP50Ms, r.CheckoutP99Ms, r.CheckoutMaxMs)
		p("release latency ms:  p50 %.2f  p99 %.2f\n", r.ReleaseP50Ms, r.ReleaseP99Ms)
		p("cycle p99 ms %.2f\n", r.CycleP99Ms)
	default:
		every := "back to back"
		if r.Workload == workloadHold {
			every = fmt.Sprintf("every %gs", r.RenewEverySeconds)
		}
		p("workload %s, target %s: %d leases held by %d clients on %d connections, renewed %s; %.1f s measured (%.1f s to take them), %d cores on this machine, load %.2f → %.2f\n",
			r.Workload, r.Target, r.Leases, r.Clients, r.Conns, every, r.Seconds, r.SetupSeconds, r.Cores, r.LoadStart, r.LoadEnd)
		p("renewals/s %.0f (%d lease renewals in %d calls)\n", r.RenewalsPerS, r.Renewals, r.RenewCalls)
		p("renew call latency ms: p50 %.2f  p99 %.2f  max %.2f\n", r.RenewP50Ms, r.RenewP99Ms, r.RenewMaxMs)
		if r.KilledMember != "" {
			if r.RecoveryMs >= 0 {
				p("leader %s killed %.1f s in: renewals flowing again %.0f ms after the kill (the first renewal sent after it answered); longest gap without a renewal %.0f ms\n",
					r.KilledMember, r.KilledAtSeconds, r.RecoveryMs, r.MaxRenewGapMs)
			} else {
				p("leader %s killed %.1f s in: no renewal sent after the kill succeeded\n", r.KilledMember, r.KilledAtSeconds)
			}
		}
		if r.LeasesKept > 0 {
			p("%d leases left held (--keep-leases): they expire after their TTL\n", r.LeasesKept)
		}
	}
	if r.MembersMeasured == 0 {
		p("server CPU not measured: no member runs on this machine\n")
	} else {
		p("server CPU s per 1,000 %s %.3f (%.2f s in all, %.2f cores busy, %d members measured)\n",
			r.opName(), r.ServerCPUPer1000Ops, r.ServerCPUSeconds, r.ServerCores, r.MembersMeasured)
	}
	for _, m := range r.Members {
		if m.Pid == 0 {
			p("member %s %s (%s): not on this machine\n", m.Name, m.Address, m.Role)
			continue
		}
		p("member %s %s (%s, pid %d): CPU %.2f s, RSS %.1f → %.1f MiB", m.Name, m.Address, m.Role, m.Pid, m.CPUSeconds, mib(m.RSSStartBytes), mib(m.RSSEndBytes))
		if m.RSSIdleBytes > 0 {
			p(", %.1f MiB before the leases, %.0f B per lease (%.0f right after taking them)", mib(m.RSSIdleBytes), m.RSSPerLeaseBytes, m.RSSPerLeaseAfterSetupBytes)
		}
		p("\n")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		p("errors %s: %d\n", k, r.Errors[k])
	}
	return b.String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func newBenchResult(cfg benchConfig) *BenchResult {
	r := &BenchResult{Workload: cfg.Workload, Target: cfg.Target, Tool: buildinfo.Get().String(), Clients: cfg.Clients,
		Conns: cfg.Conns, Unary: cfg.Unary, Cores: runtime.NumCPU(), Errors: map[string]int{}}
	if cfg.Workload != workloadCycle {
		r.Leases = cfg.Leases
	}
	if cfg.Workload == workloadHold {
		r.RenewEverySeconds = cfg.RenewEvery.Seconds()
	}
	return r
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
