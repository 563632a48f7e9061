package admin

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "drive N concurrent clients doing checkout then release; print throughput and latency",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "feature", Required: true, Usage: "feature to check out"},
			&cli.UintFlag{Name: "version", Usage: "feature version to ask for (0: any)"},
			&cli.IntFlag{Name: "clients", Value: 64, Usage: "concurrent clients, each checking out and releasing in a loop"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to run"},
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
			tlsOpts, err := clientOptions(c)
			if err != nil {
				return err
			}
			r, err := runBench(c.Context, servers(c), tlsOpts, c.String("feature"), uint32(c.Uint("version")), c.Int("clients"), c.Duration("duration"))
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			fmt.Fprint(stdout(c), r.String())
			return nil
		},
	}
}

// BenchResult is what `triadctl bench` prints.
type BenchResult struct {
	Clients       int            `json:"clients"`
	Seconds       float64        `json:"seconds"`
	Cores         int            `json:"cores"`
	Checkouts     int            `json:"checkouts"`
	CheckoutsPerS float64        `json:"checkouts_per_second"`
	CheckoutP50Ms float64        `json:"checkout_p50_ms"`
	CheckoutP99Ms float64        `json:"checkout_p99_ms"`
	CheckoutMaxMs float64        `json:"checkout_max_ms"`
	ReleaseP50Ms  float64        `json:"release_p50_ms"`
	ReleaseP99Ms  float64        `json:"release_p99_ms"`
	CycleP99Ms    float64        `json:"cycle_p99_ms"`
	Errors        map[string]int `json:"errors"`
}

func (r *BenchResult) String() string {
	s := fmt.Sprintf("clients %d, %.1f s, %d cores on this machine\n", r.Clients, r.Seconds, r.Cores)
	s += fmt.Sprintf("checkouts/s %.0f (%d checkout+release cycles)\n", r.CheckoutsPerS, r.Checkouts)
	s += fmt.Sprintf("checkout latency ms: p50 %.2f  p99 %.2f  max %.2f\n", r.CheckoutP50Ms, r.CheckoutP99Ms, r.CheckoutMaxMs)
	s += fmt.Sprintf("release latency ms:  p50 %.2f  p99 %.2f\n", r.ReleaseP50Ms, r.ReleaseP99Ms)
	s += fmt.Sprintf("cycle p99 ms %.2f\n", r.CycleP99Ms)
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		s += fmt.Sprintf("errors %s: %d\n", k, r.Errors[k])
	}
	return s
}

// opTimeout bounds one checkout or release of the benchmark.
const opTimeout = 10 * time.Second

func runBench(ctx context.Context, addrs []string, tlsOpts []client.Option, feature string, version uint32, clients int, d time.Duration) (*BenchResult, error) {
	if clients < 1 {
		return nil, fmt.Errorf("--clients must be at least 1")
	}
	type sample struct{ checkout, release time.Duration }
	var (
		mu      sync.Mutex
		samples []sample
		errs    = map[string]int{}
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	for i := 0; i < clients; i++ {
		cl, err := client.New(addrs, append([]client.Option{client.WithRenewInterval(time.Hour)}, tlsOpts...)...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
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
				lease, err := cl.Checkout(cctx, client.CheckoutRequest{Feature: feature, Version: version})
				ccancel()
				t1 := time.Now()
				if err != nil {
					mu.Lock()
					errs["checkout: "+status.Code(err).String()]++
					mu.Unlock()
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
					mu.Lock()
					errs["release: "+status.Code(err).String()]++
					mu.Unlock()
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
	elapsed := time.Since(start)
	r := &BenchResult{Clients: clients, Seconds: elapsed.Seconds(), Cores: runtime.NumCPU(), Checkouts: len(samples), Errors: errs}
	if len(samples) == 0 {
		return r, fmt.Errorf("no checkout succeeded in %s: %v", d, errs)
	}
	r.CheckoutsPerS = float64(len(samples)) / elapsed.Seconds()
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
	return r, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
