package admin

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// queuePrinter reports a queued checkout's place as it changes: a line on
// stdout, or (with -o json, whose stdout is the lease object alone) a
// JSON line on stderr.
func queuePrinter(c *cli.Context, feature string) func(client.QueueStatus) {
	return func(s client.QueueStatus) {
		if jsonOutput(c) {
			printJSON(os.Stderr, struct {
				Queued       bool   `json:"queued"`
				Feature      string `json:"feature"`
				Position     int    `json:"position"`
				Length       int    `json:"length"`
				WaitDeadline string `json:"wait_deadline"`
			}{true, feature, s.Position, s.Length, s.Deadline.UTC().Format(time.RFC3339)})
			return
		}
		fmt.Fprintf(stdout(c), "queued for %s: position %d of %d (waiting at most until %s)\n",
			feature, s.Position, s.Length, s.Deadline.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
}

// queuedJSON is one waiter of `usage queue -o json`: numbers as numbers,
// times as RFC 3339 and unix ms.
type queuedJSON struct {
	Feature            string `json:"feature"`
	Version            uint32 `json:"version"`
	Position           uint32 `json:"position"`
	Count              uint32 `json:"count"`
	User               string `json:"user"`
	Host               string `json:"host"`
	Pid                int64  `json:"pid"`
	WaitingSince       string `json:"waiting_since"`
	WaitingSinceUnixMs int64  `json:"waiting_since_unix_ms"`
	WaitDeadline       string `json:"wait_deadline"`
	WaitDeadlineUnixMs int64  `json:"wait_deadline_unix_ms"`
	ExpiresUnixMs      int64  `json:"expires_unix_ms"`
	ViaMember          string `json:"via_member"`
}

func rfc3339Ms(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

func usageQueueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "queued checkouts waiting for a seat, feature by feature in the order they will be served",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "consistent", Usage: "read through the leader (linearizable)"}},
		Action: func(c *cli.Context) error {
			r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageQueueResponse, error) {
				return a.UsageQueue(ctx, &triadv1.UsageQueueRequest{Header: h, Consistent: c.Bool("consistent")})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				out := make([]queuedJSON, 0, len(r.Queued))
				for _, q := range r.Queued {
					out = append(out, queuedJSON{q.Feature, q.Version, q.Position, q.Count, q.User, q.Host, q.Pid,
						rfc3339Ms(q.WaitingSinceUnixMs), q.WaitingSinceUnixMs, rfc3339Ms(q.WaitDeadlineUnixMs), q.WaitDeadlineUnixMs,
						q.ExpiresUnixMs, q.ViaMember})
				}
				return printJSON(stdout(c), out)
			}
			if len(r.Queued) == 0 {
				fmt.Fprintln(stdout(c), "no checkout is waiting for a seat")
				return nil
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FEATURE\tVERSION\tPOSITION\tCOUNT\tUSER\tHOST\tPID\tWAITING SINCE\tWAIT DEADLINE\tVIA")
			for _, q := range r.Queued {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", q.Feature, q.Version, q.Position, q.Count,
					q.User, q.Host, q.Pid, fmtMs(q.WaitingSinceUnixMs), fmtMs(q.WaitDeadlineUnixMs), q.ViaMember)
			}
			return w.Flush()
		},
	}
}
