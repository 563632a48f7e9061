package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
)

// fleetTTL keeps the client tests fast: renewals every TTL/3 ≈ 3.3 s, a
// lease is Held until 8 s after its last renewal was sent (margin 2 s).
const fleetTTL = 10 * time.Second

// fleet is many leases over several client.Client instances, with every
// state change any of them reports recorded for the whole test.
type fleet struct {
	t       *testing.T
	clients []*client.Client
	leases  []*client.Lease

	logs lockedBuffer // the first client's log, shown when a check fails

	mu      sync.Mutex
	changes []client.StateChange
}

// newFleet checks out perClient leases of cad v1 on each of nClients
// clients, concurrently.
func newFleet(t *testing.T, addrs []string, nClients, perClient int, opts ...client.Option) *fleet {
	t.Helper()
	f := &fleet{t: t}
	for i := range nClients {
		lg := slog.New(slog.DiscardHandler)
		if i == 0 {
			lg = slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		o := append([]client.Option{tlsOption(t), client.WithLogger(lg), client.WithStateHandler(f.record), client.WithIdentity("", "", 0, fmt.Sprintf("fleet-%d", i))}, opts...)
		c, err := client.New(addrs, o...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		f.clients = append(f.clients, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range f.clients {
		for range perClient {
			wg.Go(func() {
				l, err := c.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: fleetTTL})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				f.leases = append(f.leases, l)
			})
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d checkouts failed, first: %v", len(errs), errs[0])
	}
	return f
}

func (f *fleet) record(ev client.StateChange) {
	f.mu.Lock()
	f.changes = append(f.changes, ev)
	f.mu.Unlock()
}

// reported counts the changes to state s seen so far.
func (f *fleet) reported(s client.LeaseState) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, ev := range f.changes {
		if ev.To == s {
			n++
		}
	}
	return n
}

// expectNeverLeftHeld fails if any lease was ever reported in Grace or Lost.
func (f *fleet) expectNeverLeftHeld() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var bad []string
	for _, ev := range f.changes {
		if ev.To != client.Held {
			bad = append(bad, fmt.Sprintf("lease %d %s→%s at %s (%v)", ev.LeaseID, ev.From, ev.To, ev.At.Format("15:04:05.000"), ev.Err))
		}
	}
	if len(bad) > 0 {
		f.t.Logf("first client's log:\n%s", f.logs.String())
		f.t.Fatalf("%d changes away from Held: %s", len(bad), strings.Join(bad[:min(len(bad), 5)], "; "))
	}
}

func (f *fleet) ids() []uint64 {
	var ids []uint64
	for _, l := range f.leases {
		ids = append(ids, l.ID())
	}
	slices.Sort(ids)
	return ids
}

// waitAll waits until cond holds for every lease.
func (f *fleet) waitAll(d time.Duration, what string, cond func(l *client.Lease) error) {
	f.t.Helper()
	waitFor(f.t, d, what, func() error {
		bad := 0
		var first error
		for _, l := range f.leases {
			if err := cond(l); err != nil {
				if bad++; first == nil {
					first = err
				}
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d leases: %v", bad, len(f.leases), first)
		}
		return nil
	})
}

func renewedAfter(t0 time.Time) func(*client.Lease) error {
	return func(l *client.Lease) error {
		if !l.LastRenewed().After(t0) {
			return fmt.Errorf("lease %d last renewed %s before", l.ID(), t0.Sub(l.LastRenewed()).Round(time.Millisecond))
		}
		return nil
	}
}

func inState(s client.LeaseState, src client.Source) func(*client.Lease) error {
	return func(l *client.Lease) error {
		if l.State() != s || l.Source() != src {
			return fmt.Errorf("lease %d is %s on the %s", l.ID(), l.State(), l.Source())
		}
		return nil
	}
}

// inUse is the seats of cad in use according to servers (a consistent read).
func inUse(c *cluster, servers string) uint32 {
	var n uint32
	for _, r := range c.usage(servers) {
		if r.Feature == "cad" {
			n += r.InUse
		}
	}
	return n
}

func without(ms []*member, gone *member) []*member {
	var out []*member
	for _, m := range ms {
		if m != gone {
			out = append(out, m)
		}
	}
	return out
}

func addrsOf(ms ...*member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.addr)
	}
	return out
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
