package admin

import (
	"strings"
	"testing"
	"time"
)

// The report is deterministic: the same result prints the same text, the
// error counts in sorted order.
func TestBenchResultStringSortsErrors(t *testing.T) {
	r := &BenchResult{Clients: 4, Seconds: 1, Cores: 2, Checkouts: 100, CheckoutsPerS: 100,
		CheckoutP50Ms: 1.5, CheckoutP99Ms: 3.25, CheckoutMaxMs: 7, ReleaseP50Ms: 1, ReleaseP99Ms: 2, CycleP99Ms: 5,
		Errors: map[string]int{"release: Unavailable": 1, "checkout: ResourceExhausted": 12, "checkout: DeadlineExceeded": 2, "checkout: Unavailable": 3}}
	want := "clients 4, 1.0 s, 2 cores on this machine\n" +
		"checkouts/s 100 (100 checkout+release cycles)\n" +
		"checkout latency ms: p50 1.50  p99 3.25  max 7.00\n" +
		"release latency ms:  p50 1.00  p99 2.00\n" +
		"cycle p99 ms 5.00\n" +
		"errors checkout: DeadlineExceeded: 2\n" +
		"errors checkout: ResourceExhausted: 12\n" +
		"errors checkout: Unavailable: 3\n" +
		"errors release: Unavailable: 1\n"
	for i := 0; i < 20; i++ { // map order differs from run to run
		if got := r.String(); got != want {
			t.Fatalf("String() =\n%s\nwant\n%s", got, want)
		}
	}
	r.Errors = nil
	if got := r.String(); strings.Contains(got, "errors") {
		t.Fatalf("String() without errors mentions errors:\n%s", got)
	}
}

func TestBenchPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    int
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}} {
		if got := pct(d, tc.p); got != tc.want {
			t.Errorf("pct(1..200 ms, %d) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := pct(d[:1], 99); got != time.Millisecond {
		t.Errorf("pct of one sample = %s, want it", got)
	}
}

func TestBenchRefusesNoClients(t *testing.T) {
	if _, err := runBench(t.Context(), []string{"127.0.0.1:1"}, nil, "cad", 1, 0, time.Second); err == nil || !strings.Contains(err.Error(), "--clients") {
		t.Fatalf("runBench with 0 clients: %v, want an error naming --clients", err)
	}
}
