package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/triadlm/triad/client"
)

// A licensed process checks out a seat at start, works while the lease is
// held, and releases it at exit. (Needs a running cluster, so no Output.)
func Example() {
	c, err := client.New([]string{"lic1:4085", "lic2:4085", "lic3:4085"})
	if err != nil {
		log.Fatal(err)
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
	defer lease.Release(context.Background())

	select {
	case <-lease.Done():
		log.Fatalf("license lost: %v", lease.Err())
	case <-time.After(time.Minute): // the real work
	}
}

// Every state change of every lease reaches one handler, in order; here it
// warns the user while the license servers are unreachable.
func ExampleWithStateHandler() {
	c, err := client.New([]string{"lic1:4085", "lic2:4085", "lic3:4085"},
		client.WithStateHandler(func(ch client.StateChange) {
			switch ch.To {
			case client.Grace:
				log.Printf("license server unreachable: %s left to save your work", ch.GraceLeft.Round(time.Minute))
			case client.Held:
				log.Printf("license server reachable again (%s)", ch.Source)
			case client.Lost:
				log.Printf("license lost: %v", ch.Err)
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// A lease's own changes can also be read from its Changes channel, which
// is closed after the final one.
func ExampleLease_Changes() {
	c, err := client.New([]string{"lic1:4085", "lic2:4085", "lic3:4085"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for ch := range lease.Changes() {
			fmt.Printf("lease %d is now %s on the %s\n", ch.LeaseID, ch.To, ch.Source)
		}
	}()
}

// A backup server is used only while no cluster member answers.
func ExampleWithBackup() {
	c, err := client.New([]string{"lic1:4085", "lic2:4085", "lic3:4085"}, client.WithBackup("lic-backup:4085"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Checkout(context.Background(), client.CheckoutRequest{Feature: "cad", Version: 5})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(lease.Source(), lease.State(), lease.GraceLeft())
}

// Telling the user which side to upgrade.
func ExampleProtocolVersionError() {
	var err error = &client.ProtocolVersionError{Client: 2, Server: 1}
	var pv *client.ProtocolVersionError
	if errors.As(err, &pv) && pv.Client > pv.Server {
		fmt.Println("upgrade the license server:", err)
	}
	fmt.Println(errors.Is(err, client.ErrProtocolVersion))
	// Output:
	// upgrade the license server: license protocol version is invalid: client 2, server 1
	// true
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
