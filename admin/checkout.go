package admin

import (
	"cmp"
	"context"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/featver"
)

func checkoutCommand() *cli.Command {
	return &cli.Command{
		Name:  "checkout",
		Usage: "take a lease for testing, hold it with renewals, then release it",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "feature", Required: true, Usage: "feature to check out"},
			&cli.StringFlag{Name: "version", Usage: "feature version wanted: a whole number (5) or a dotted version (2.1, 2024.06, 5.3.1); a seat serves its version and lower ones (default 0: any)"},
			&cli.UintFlag{Name: "count", Value: 1, Usage: "seats to take"},
			&cli.DurationFlag{Name: "hold", Usage: "how long to hold the lease (0: until Ctrl-C)"},
			&cli.DurationFlag{Name: "ttl", Usage: "lease TTL (0: server default)"},
			&cli.BoolFlag{Name: "queue", Usage: "wait in the feature's queue for a seat instead of failing when none is free (prints the position while waiting)"},
			&cli.DurationFlag{Name: "wait", Usage: "with --queue: longest wait for a seat, measured by the cluster (0: 1h; at most 168h)"},
		},
		Action: func(c *cli.Context) error {
			opts, err := clientOptions(c)
			if err != nil {
				return err
			}
			cl, err := client.New(servers(c), opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			req := client.CheckoutRequest{
				Feature: c.String("feature"), VersionText: c.String("version"),
				Count: uint32(c.Uint("count")), TTL: c.Duration("ttl"),
			}
			limit := c.Duration("timeout")
			if c.IsSet("wait") && !c.Bool("queue") {
				return fmt.Errorf("--wait needs --queue")
			}
			if c.Bool("queue") {
				req.Queue, req.MaxWait, req.OnQueue = true, c.Duration("wait"), queuePrinter(c, req.Feature)
				// The cluster ends the wait; the call only needs to outlive it.
				limit += cmp.Or(req.MaxWait, time.Hour)
			}
			wctx, stopWait := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			ctx, cancel := context.WithTimeout(wctx, limit)
			lease, err := cl.Checkout(ctx, req)
			cancel()
			stopWait()
			if err != nil {
				return oneError("checkout "+c.String("feature"), err)
			}
			info := lease.Info()
			if jsonOutput(c) {
				// lease_id comes first, so scripts can read it off the first line.
				printJSON(stdout(c), struct {
					LeaseID      uint64 `json:"lease_id"`
					Feature      string `json:"feature"`
					Version      uint32 `json:"version"`
					Count        uint32 `json:"count"`
					FencingIndex uint64 `json:"fencing_index"`
					ViaMember    string `json:"via_member"`
					TTLSeconds   uint32 `json:"ttl_seconds"`
					VersionText  string `json:"version_text,omitempty"`
				}{info.GetLeaseId(), info.GetFeature(), info.GetVersion(), info.GetCount(), info.GetFencingIndex(), info.GetViaMember(), info.GetTtlSeconds(), info.GetVersionText()})
			} else {
				fmt.Fprintf(stdout(c), "lease %d: %d × %s v%s (fencing index %d, via %s); holding",
					info.GetLeaseId(), info.GetCount(), info.GetFeature(), featver.Display(info.GetVersion(), info.GetVersionText()), info.GetFencingIndex(), info.GetViaMember())
				if h := c.Duration("hold"); h > 0 {
					fmt.Fprintf(stdout(c), " for %s\n", h)
				} else {
					fmt.Fprintln(stdout(c), " until Ctrl-C")
				}
			}
			hold, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if h := c.Duration("hold"); h > 0 {
				var cancel context.CancelFunc
				hold, cancel = context.WithTimeout(hold, h)
				defer cancel()
			}
			select {
			case <-hold.Done():
			case <-lease.Done():
				return fmt.Errorf("lease %d was lost while held: %v", lease.ID(), lease.Err())
			}
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				return oneError(fmt.Sprintf("release lease %d", lease.ID()), err)
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), map[string]any{"lease_id": lease.ID(), "released": true})
			}
			fmt.Fprintf(stdout(c), "lease %d released\n", lease.ID())
			return nil
		},
	}
}

// oneError says what failed once: "checkout cad: no seat left ...", not
// the client library's own "triad: checkout: " prefix under the command's.
// A cluster's answer is its status message; other errors lose the
// library's prefix.
func oneError(what string, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return fmt.Errorf("%s: %s", what, st.Message())
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "triad: "); ok {
		msg = rest
		if op, tail, ok := strings.Cut(rest, ": "); ok && !strings.Contains(op, " ") {
			msg = tail // "checkout: ..." under "checkout cad: "
		}
	}
	return fmt.Errorf("%s: %s", what, msg)
}
