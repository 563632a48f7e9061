// Command triad-example is a minimal licensed program: it checks out a
// seat of a feature from a Triad cluster, prints the lease state every
// second, and gives the seat back on Ctrl-C or SIGTERM. Copy it.
//
//	triad-example --servers lic1:4085,lic2:4085,lic3:4085 --feature cad --version 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/triadlm/triad/client"
)

func main() {
	servers := flag.String("servers", "127.0.0.1:4085", "licensing addresses of the cluster members, comma-separated")
	backup := flag.String("backup", "", "address of a standalone backup server, used only while the cluster is unreachable")
	feature := flag.String("feature", "cad", "feature to check out")
	version := flag.Uint("version", 1, "feature version")
	ttl := flag.Duration("ttl", 0, "lease TTL (0: the server's default)")
	ca := flag.String("ca", os.Getenv("TRIAD_CA"), "cluster CA certificate the members' certificates chain to (default $TRIAD_CA)")
	insecure := flag.Bool("insecure", false, "plaintext, for members started with --insecure")
	flag.Parse()
	tlsOpt := client.WithInsecure()
	if !*insecure {
		cfg, err := client.TLSConfig(*ca, "", "")
		if err != nil {
			fmt.Fprintln(os.Stderr, "triad-example:", err)
			os.Exit(1)
		}
		tlsOpt = client.WithTLS(cfg)
	}
	if err := run(*servers, *backup, *feature, uint32(*version), *ttl, tlsOpt); err != nil {
		fmt.Fprintln(os.Stderr, "triad-example:", err)
		os.Exit(1)
	}
}

func run(servers, backup, feature string, version uint32, ttl time.Duration, tlsOpt client.Option) error {
	opts := []client.Option{tlsOpt}
	if backup != "" {
		opts = append(opts, client.WithBackup(strings.Split(backup, ",")...))
	}
	c, err := client.New(strings.Split(servers, ","), opts...)
	if err != nil {
		return err
	}
	defer c.Close()

	// Stop on Ctrl-C or SIGTERM, also while the checkout is in progress.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	checkoutCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	lease, err := c.Checkout(checkoutCtx, client.CheckoutRequest{Feature: feature, Version: version, TTL: ttl})
	cancel()
	switch {
	case errors.Is(err, client.ErrNoSeat):
		return fmt.Errorf("every seat of %s is in use, try again later: %w", feature, err)
	case err != nil:
		return err
	}
	// Give the seat back on the way out, even if no server answers quickly.
	defer func() {
		releaseCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lease.Release(releaseCtx); err != nil {
			fmt.Fprintln(os.Stderr, "triad-example: release:", err)
		}
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		line := fmt.Sprintf("state=%s lease=%d source=%s grace_left=%s",
			lease.State(), lease.ID(), lease.Source(), lease.GraceLeft().Round(time.Second))
		// The servers answer but refuse the renewals (say, upgraded to a
		// protocol this program does not speak): tell the user why.
		if err := lease.RenewErr(); err != nil {
			line += fmt.Sprintf(" refused=%q", err.Error())
		}
		fmt.Println(line)
		select {
		case <-ctx.Done():
			fmt.Println("stopping: releasing the lease")
			return nil
		case <-lease.Done():
			if lease.State() == client.Lost {
				return fmt.Errorf("license lost: %w", lease.Err())
			}
			return nil
		case <-tick.C:
		}
	}
}
