package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/client/internal/fakeserver"
)

// The examples run against in-process stand-ins for the license servers
// (startCluster, startBackup), so that `go test` checks their output. A
// product passes the licensing addresses of its cluster's three members
// instead, e.g. []string{"lic1:4085", "lic2:4085", "lic3:4085"}, and those
// of a standalone backup server to WithBackup.

// standIn is a stand-in server whose watchdog ends a hung example after a
// minute instead of at the test binary's timeout.
type standIn struct {
	*fakeserver.Server
	watchdog *time.Timer
}

func (s standIn) Close() {
	s.watchdog.Stop()
	s.Server.Close()
}

func start(members int, features ...fakeserver.Feature) standIn {
	s, err := fakeserver.Start(members, features...)
	if err != nil {
		log.Fatal(err)
	}
	return standIn{s, time.AfterFunc(time.Minute, func() { panic("example did not finish within a minute") })}
}

// mustTLS is the TLS configuration for the stand-in's CA; with a real
// cluster: client.TLSConfig("/etc/triad/ca.crt", "", "").
func mustTLS(s standIn) *tls.Config {
	cfg, err := client.TLSConfig(s.CAFile(), "", "")
	if err != nil {
		log.Fatal(err)
	}
	return cfg
}

// startCluster stands in for a three-member cluster licensed for 10 seats
// of cad up to version 5, borrowable for up to 72 h.
func startCluster() standIn {
	return start(3, fakeserver.Feature{Name: "cad", Version: 5, Seats: 10, MaxBorrow: 72 * time.Hour})
}

// startBackup stands in for a standalone backup server with 5 seats of cad.
func startBackup() standIn {
	return start(1, fakeserver.Feature{Name: "cad", Version: 5, Seats: 5})
}

// A licensed process checks out a seat at start, works while the lease is
// held, and releases it at exit.
func Example() {
	cluster := startCluster() // lic1:4085, lic2:4085, lic3:4085
	defer cluster.Close()

	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)))
	if err != nil {
		log.Fatal(err) // only for bad addresses: members may be down
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := c.Checkout(ctx, client.CheckoutRequest{Feature: "cad", Version: 5})
	switch {
	case errors.Is(err, client.ErrNoSeat):
		log.Fatal("all seats are in use; try again later")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("lease", lease.ID(), "is", lease.State(), "on the", lease.Source())

	select {
	case <-lease.Done():
		log.Fatalf("license lost: %v", lease.Err())
	case <-time.After(100 * time.Millisecond): // the real work
	}

	if err := lease.Release(ctx); err != nil {
		log.Print(err) // not confirmed: the seat frees itself when its TTL runs out
	}
	fmt.Println("lease", lease.ID(), "is", lease.State())
	// Output:
	// lease 1 is held on the cluster
	// lease 1 is released
}

// Every state change of every lease reaches one handler, in order; here it
// warns the user while the license servers are unreachable.
func ExampleWithStateHandler() {
	cluster := startCluster()
	defer cluster.Close()

	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)),
		client.WithStateHandler(func(ch client.StateChange) {
			switch ch.To {
			case client.Grace:
				fmt.Printf("license servers unreachable: %s left to save your work\n", ch.GraceLeft.Round(time.Minute))
			case client.Held:
				fmt.Printf("license servers reachable again (lease %d on the %s)\n", ch.LeaseID, ch.Source)
			case client.Lost:
				fmt.Printf("license lost: %v\n", ch.Err)
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A TTL of 2 s makes the lease leave Held soon after the servers become
	// unreachable; products keep the default (30 s).
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5, TTL: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	cluster.SetDown(true) // the network to every member goes down...
	for ch := range lease.Changes() {
		if ch.To == client.Grace {
			cluster.SetDown(false) // ...and comes back
		}
		if ch.To == client.Held {
			break
		}
	}
	// Output:
	// license servers unreachable: 2h0m0s left to save your work
	// license servers reachable again (lease 1 on the cluster)
}

// A lease's own changes can also be read from its Changes channel, which
// is closed after the final one. The lease id stays the same across an
// outage.
func ExampleLease_Changes() {
	cluster := startCluster()
	defer cluster.Close()
	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5, TTL: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}

	cluster.SetDown(true) // the license servers become unreachable for a while
	for ch := range lease.Changes() {
		fmt.Printf("lease %d is now %s on the %s\n", ch.LeaseID, ch.To, ch.Source)
		switch ch.To {
		case client.Grace:
			cluster.SetDown(false) // they are back
		case client.Held:
			lease.Release(context.Background()) // done: Released is the last change
		}
	}
	// Output:
	// lease 1 is now grace on the cluster
	// lease 1 is now held on the cluster
	// lease 1 is now released on the cluster
}

// A backup server is used only while no cluster member answers. The lease
// moves back as soon as the cluster answers again, keeping its cluster
// lease id, and its backup lease is released at once to spare the backup's
// hours.
func ExampleWithBackup() {
	cluster := startCluster()
	defer cluster.Close()
	backup := startBackup() // lic-backup:4085, a standalone server with its own license
	defer backup.Close()

	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)), client.WithBackup(backup.Addrs()...))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5, TTL: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())
	fmt.Println(lease.State(), "on the", lease.Source(), "lease", lease.ID())

	cluster.SetDown(true) // the whole cluster is unreachable
	for ch := range lease.Changes() {
		fmt.Println(ch.To, "on the", ch.Source)
		if ch.To == client.Held && ch.Source == client.SourceBackup {
			cluster.SetDown(false) // the cluster is back
		}
		if ch.To == client.Held && ch.Source == client.SourceCluster {
			break
		}
	}
	fmt.Println(lease.State(), "on the", lease.Source(), "lease", lease.ID())
	// Output:
	// held on the cluster lease 1
	// grace on the cluster
	// held on the backup
	// held on the cluster
	// held on the cluster lease 1
}

// Borrowing takes seats for offline use: the cluster keeps them until
// Until without any renewal, so a laptop can leave the network. Extend
// moves the end within the license's limit; Return gives the seats back
// early.
func ExampleClient_Borrow() {
	cluster := startCluster() // its license lets cad be borrowed for up to 72 h
	defer cluster.Close()
	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	b, err := c.Borrow(ctx, client.BorrowRequest{Feature: "cad", Version: 5, Duration: 8 * time.Hour})
	if err != nil {
		log.Fatal(err) // FAILED_PRECONDITION if the license allows no borrowing
	}
	fmt.Printf("borrowed lease %d for %s\n", b.ID(), time.Until(b.Until()).Round(time.Hour))

	if err := b.Extend(ctx, 48*time.Hour); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("extended to %s from now\n", time.Until(b.Until()).Round(time.Hour))
	err = b.Extend(ctx, 30*24*time.Hour)
	fmt.Println("a month:", status.Code(err))

	if err := b.Return(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("returned; seats in use:", cluster.InUse("cad"))
	// Output:
	// borrowed lease 1 for 8h0m0s
	// extended to 48h0m0s from now
	// a month: FailedPrecondition
	// returned; seats in use: 0
}

// Telling the user which side to upgrade.
func ExampleProtocolVersionError() {
	cluster := startCluster()
	defer cluster.Close()
	cluster.SetProtocolVersion(3) // the license servers run a newer protocol

	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5})
	var pv *client.ProtocolVersionError
	switch {
	case errors.As(err, &pv) && pv.Server > pv.Client:
		fmt.Println("upgrade this program:", err)
	case errors.As(err, &pv):
		fmt.Println("upgrade the license servers:", err)
	}
	fmt.Println(errors.Is(err, client.ErrProtocolVersion))
	// Output:
	// upgrade this program: license protocol version is invalid: client 2, server 3
	// true
}

// A running lease learns why its renewals fail: here the license servers
// were upgraded to a protocol this program does not speak. The lease goes
// on as in an outage (Held, then Grace), with the typed refusal in
// RenewErr.
func ExampleLease_RenewErr() {
	cluster := startCluster()
	defer cluster.Close()
	c, err := client.New(cluster.Addrs(), client.WithTLS(mustTLS(cluster)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5, TTL: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	cluster.SetProtocolVersion(3) // the servers are upgraded
	for ch := range lease.Changes() {
		if ch.To == client.Grace {
			var pv *client.ProtocolVersionError
			if errors.As(ch.RenewErr, &pv) {
				fmt.Printf("%s: the license servers speak protocol %d, this program %d\n", ch.To, pv.Server, pv.Client)
			}
			break
		}
	}
	// Output:
	// grace: the license servers speak protocol 3, this program 2
}

func ExampleLeaseState() {
	for _, s := range []client.LeaseState{client.Held, client.Grace, client.Lost, client.Released} {
		fmt.Println(s)
	}
	// Output:
	// held
	// grace
	// lost
	// released
}
