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
