package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeLayer is a raftLayer whose single dials fail with other, or are
// refused the first refusals times (for good when negative), then answer.
func fakeLayer(refusals int32, other error) (*raftLayer, *atomic.Int32) {
	s := &Side{done: make(chan struct{})}
	r := &raftLayer{chanListener: newChanListener(s, nil, nil), stop: make(chan struct{})}
	var calls atomic.Int32
	r.dialOnce = func(ctx context.Context, addr string) (net.Conn, error) {
		n := calls.Add(1)
		if other != nil {
			return nil, other
		}
		if refusals < 0 || n <= refusals {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}
		}
		c, _ := net.Pipe()
		return c, nil
	}
	return r, &calls
}

// A member whose port refuses (its process is down or restarting) is
// dialed again until it answers, within Raft's timeout, so Raft's
// replication sees one slow dial rather than a failure per refusal (and
// no growing backoff); any other error returns at once.
func TestRaftDialRetriesRefusedConnections(t *testing.T) {
	r, calls := fakeLayer(3, nil)
	c, err := r.Dial("10.0.0.2:1", 10*time.Second)
	if err != nil {
		t.Fatalf("Dial after 3 refusals: %v", err)
	}
	c.Close()
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d dials, want 3 refused then 1 answered", n)
	}

	other := errors.New("tls: bad certificate")
	r, calls = fakeLayer(0, other)
	if _, err := r.Dial("10.0.0.2:1", 10*time.Second); !errors.Is(err, other) || calls.Load() != 1 {
		t.Fatalf("Dial with a non-refusal error: %v after %d dials, want it at once", err, calls.Load())
	}

	// Refused for good: the refusal comes back when the timeout ends.
	r, calls = fakeLayer(-1, nil)
	start := time.Now()
	_, err = r.Dial("10.0.0.2:1", 300*time.Millisecond)
	if !errors.Is(err, syscall.ECONNREFUSED) || calls.Load() < 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("Dial refused for good: %v after %d dials in %v, want the refusal after retrying until the timeout", err, calls.Load(), time.Since(start))
	}

	// StopRetries (before Raft shuts down) ends a dial in progress.
	r, _ = fakeLayer(-1, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := r.Dial("10.0.0.2:1", time.Minute)
		errc <- err
	}()
	r.StopRetries()
	r.StopRetries() // idempotent
	select {
	case err := <-errc:
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("stopped Dial: %v, want the refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dial still retrying 10 s after StopRetries")
	}
}
