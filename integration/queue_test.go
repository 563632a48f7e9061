package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// ctlProc is a triadctl process left running (a queued checkout).
type ctlProc struct {
	cmd      *exec.Cmd
	mu       sync.Mutex
	out, err bytes.Buffer
	exited   chan struct{}
}

func (p *ctlProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *ctlProc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startCtl(t *testing.T, servers string, args ...string) *ctlProc {
	t.Helper()
	p := &ctlProc{exited: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, "triadctl"), append([]string{"--server", servers}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, &p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

type queuedRow struct {
	Feature  string `json:"feature"`
	Position int    `json:"position"`
	User     string `json:"user"`
	Pid      int64  `json:"pid"`
}

func queueOf(t *testing.T, servers string) []queuedRow {
	var rows []queuedRow
	ctlJSON(t, servers, &rows, "usage", "queue", "--consistent")
	return rows
}

func queueIs(t *testing.T, servers string, want ...string) func() error {
	return func() error {
		var got []string
		for _, r := range queueOf(t, servers) {
			got = append(got, fmt.Sprintf("%d:%s/%d", r.Position, r.User, r.Pid))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("queue %v, want %v", got, want)
		}
		return nil
	}
}

// TestQueuedCheckouts (issue 13, point 1) on real processes: a 1-seat
// feature, its holder and three queued waiters (two triadctl processes, one
// client library). A waiter whose process dies leaves the queue; the
// release goes to the first waiter; the leader is killed while the second
// waits, and after the failover the second gets the seat when the first
// releases.
func TestQueuedCheckouts(t *testing.T) {
	c := formedWithLicense(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	holderC, err := client.New(strings.Split(c.servers(), ","), tlsOption(t), client.WithIdentity("holder", "ws0", 1, "cid-holder"))
	if err != nil {
		t.Fatal(err)
	}
	defer holderC.Close()
	held, err := holderC.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A plain checkout is refused at once; a queued one waits.
	if _, err := ctlOn(t, c.servers(), "checkout", "--feature", "cad", "--hold", "1s"); err == nil || !strings.Contains(err.Error(), "no seat left") {
		t.Fatalf("plain checkout on a full feature: %v", err)
	}
	first := startCtl(t, c.servers(), "checkout", "--feature", "cad", "--version", "1", "--queue", "--wait", "5m", "--ttl", "3s")
	waitFor(t, 30*time.Second, "the first waiter prints its position", func() error {
		if !strings.Contains(first.stdout(), "queued for cad: position 1 of 1 (waiting at most until ") {
			return fmt.Errorf("stdout %q", first.stdout())
		}
		return nil
	})
	firstPid := int64(first.cmd.Process.Pid)

	secondC, err := client.New(strings.Split(c.servers(), ","), tlsOption(t), client.WithIdentity("bob", "ws2", 2, "cid-bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer secondC.Close()
	var mu sync.Mutex
	var positions []int
	type result struct {
		l   *client.Lease
		err error
	}
	secondDone := make(chan result, 1)
	go func() {
		l, err := secondC.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 1, TTL: 3 * time.Second, Queue: true, RequestID: "bob-req-1",
			MaxWait: 5 * time.Minute, OnQueue: func(s client.QueueStatus) {
				mu.Lock()
				positions = append(positions, s.Position)
				mu.Unlock()
			}})
		secondDone <- result{l, err}
	}()
	waitFor(t, 30*time.Second, "the second waiter queued", queueIs(t, c.servers(), fmt.Sprintf("1:%s/%d", queueOf(t, c.servers())[0].User, firstPid), "2:bob/2"))
	user := queueOf(t, c.servers())[0].User

	// Through the raw API: another client cannot cancel bob's wait with his
	// request id, and a wait beyond 7 days is refused, naming the limit.
	raw := licensing(t, c.members[1].addr)
	cr, err := raw.CancelQueued(ctx, &triadv1.CancelQueuedRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "bob-req-1", ClientId: "mallory"})
	if err != nil || cr.Removed {
		t.Fatalf("cancel of another client's wait: %v %v", cr, err)
	}
	_, err = raw.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "m1", ClientId: "mallory",
		Feature: "cad", Queue: true, QueueWaitSeconds: 8 * 24 * 3600})
	if grpcstatus.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "queue_wait_seconds") {
		t.Fatalf("an 8-day wait: %v", err)
	}
	// More seats than licensed can never fit: refused at once, not queued.
	_, err = raw.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "m2", ClientId: "mallory",
		Feature: "cad", Count: 2, Queue: true})
	// The member answers it as the definite FAILED_PRECONDITION (not the
	// retryable RESOURCE_EXHAUSTED), as for a plain checkout.
	if grpcstatus.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "can never fit") {
		t.Fatalf("2 seats of a 1-seat feature: %v", err)
	}
	if err := queueIs(t, c.servers(), fmt.Sprintf("1:%s/%d", user, firstPid), "2:bob/2")(); err != nil {
		t.Fatal(err)
	}

	third := startCtl(t, c.servers(), "checkout", "--feature", "cad", "--version", "1", "--queue", "--wait", "5m", "--ttl", "3s")
	thirdPid := int64(third.cmd.Process.Pid)
	waitFor(t, 30*time.Second, "three waiters in order", queueIs(t, c.servers(),
		fmt.Sprintf("1:%s/%d", user, firstPid), "2:bob/2", fmt.Sprintf("3:%s/%d", user, thirdPid)))
	rows := c.usage(c.servers())
	var features []struct {
		Feature     string `json:"feature"`
		QueueLength int    `json:"queue_length"`
	}
	ctlJSON(t, c.servers(), &features, "usage", "features", "--consistent")
	if len(rows) != 1 || len(features) != 1 || features[0].QueueLength != 3 {
		t.Fatalf("usage features %+v", features)
	}
	table, err := ctlOn(t, c.servers(), "usage", "queue")
	if err != nil || !strings.Contains(table, "POSITION") || !strings.Contains(table, "bob") {
		t.Fatalf("usage queue table %q: %v", table, err)
	}

	// The third waiter's process dies: it stops renewing and leaves.
	third.cmd.Process.Signal(syscall.SIGKILL)
	waitFor(t, 30*time.Second, "the dead waiter left the queue", queueIs(t, c.servers(),
		fmt.Sprintf("1:%s/%d", user, firstPid), "2:bob/2"))

	// The release goes to the first waiter, not the second.
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the first waiter holds the seat", func() error {
		if !strings.Contains(first.stdout(), "lease ") || !strings.Contains(first.stdout(), "holding until Ctrl-C") {
			return fmt.Errorf("stdout %q", first.stdout())
		}
		return nil
	})
	waitFor(t, 30*time.Second, "the second waiter moved up", queueIs(t, c.servers(), "1:bob/2"))

	// Kill the leader while the second waits.
	leader := c.leader(c.members[0])
	leader.kill()
	var alive []string
	var other *member
	for _, m := range c.members {
		if m != leader {
			alive = append(alive, m.addr)
			other = m
		}
	}
	survivors := strings.Join(alive, ",")
	c.newLeader(other, leader)
	waitFor(t, 30*time.Second, "the queue survived the failover", queueIs(t, survivors, "1:bob/2"))
	select {
	case r := <-secondDone:
		t.Fatalf("the second waiter returned during the failover: %v %v", r.l, r.err)
	default:
	}
	// The first releases (Ctrl-C): the seat goes to the second.
	first.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-first.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("triadctl checkout did not exit after Ctrl-C")
	}
	if !strings.Contains(first.stdout(), "released") {
		t.Fatalf("first waiter output %q", first.stdout())
	}
	var r result
	select {
	case r = <-secondDone:
	case <-time.After(60 * time.Second):
		t.Fatal("the second waiter was not granted after the first released")
	}
	if r.err != nil || r.l.State() != client.Held {
		t.Fatalf("second waiter: %v", r.err)
	}
	// Reported on every change of place, length (the third came and
	// went) or deadline (the failover moved it): the positions were 2 then 1.
	mu.Lock()
	got := fmt.Sprint(slices.Compact(slices.Clone(positions)))
	mu.Unlock()
	if got != "[2 1]" {
		t.Errorf("second waiter's positions %v, want 2 then 1", positions)
	}
	if q := queueOf(t, survivors); len(q) != 0 {
		t.Fatalf("queue after the grant: %+v", q)
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
