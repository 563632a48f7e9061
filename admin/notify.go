package admin

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// NotifyTester is implemented by a Backend that sends notifications
// (package server does).
type NotifyTester interface {
	// TestNotify sends a test message through channel ("mail" or
	// "webhook") to every configured target, once, and reports each outcome.
	TestNotify(ctx context.Context, channel string) (*triadv1.ServerTestNotifyResponse, error)
}

// ServerTestNotify sends a test notification (full mode: it makes the
// member contact outside hosts).
func (s *Service) ServerTestNotify(ctx context.Context, req *triadv1.ServerTestNotifyRequest) (*triadv1.ServerTestNotifyResponse, error) {
	ch := req.GetChannel()
	if ch != "mail" && ch != "webhook" {
		return nil, status.Errorf(codes.InvalidArgument, "unknown notification channel %q: use mail or webhook", ch)
	}
	me, err := s.auth(ctx, req.GetHeader(), "server test-"+ch, true)
	if err != nil {
		return nil, err
	}
	t, ok := s.b.(NotifyTester)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this member sends no notifications")
	}
	resp, err := t.TestNotify(ctx, ch)
	s.served(ctx, me, "server test-"+ch, nil, err)
	return resp, err
}

func testNotifyCommand(channel, usage string) *cli.Command {
	return &cli.Command{
		Name:      "test-" + channel,
		Usage:     usage,
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ServerTestNotifyResponse, error) {
				return a.ServerTestNotify(ctx, &triadv1.ServerTestNotifyRequest{Header: h, Channel: channel})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				if err := printJSON(stdout(c), r); err != nil {
					return err
				}
			} else {
				for _, res := range r.Results {
					if res.Ok {
						fmt.Fprintf(stdout(c), "%s: test %s sent by %s to %s\n", "ok", channel, r.Member, res.Target)
					} else {
						fmt.Fprintf(stdout(c), "FAILED: test %s from %s to %s: %s\n", channel, r.Member, res.Target, res.Error)
					}
				}
			}
			var failed []string
			for _, res := range r.Results {
				if !res.Ok {
					failed = append(failed, res.Target+": "+res.Error)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("test %s failed for %s", channel, strings.Join(failed, "; "))
			}
			return nil
		},
	}
}

func testMailCommand() *cli.Command {
	return testNotifyCommand("mail", "send a test mail through the member's SMTP configuration (full mode); reports the mail server's exact error")
}

func testWebhookCommand() *cli.Command {
	return testNotifyCommand("webhook", "POST a signed test event to each of the member's webhooks (full mode); reports each endpoint's exact error")
}

// printNotify shows the notification settings of server show.
func printNotify(w *tabwriter.Writer, n *triadv1.NotifySettings) {
	if n == nil {
		return
	}
	fmt.Fprintln(w)
	if n.SmtpServer == "" {
		fmt.Fprintf(w, "mail notifications\toff\n")
	} else {
		sec := "plain"
		switch {
		case n.SmtpStarttls:
			sec = "STARTTLS"
		case n.SmtpTls:
			sec = "TLS"
		}
		auth := "none"
		if n.SmtpUsername != "" {
			auth = n.SmtpUsername + map[bool]string{true: " (password set)", false: " (no password)"}[n.SmtpPasswordSet]
		}
		fmt.Fprintf(w, "mail server\t%s (%s)\nmail from\t%s\nmail to\t%s\nmail login\t%s\n", n.SmtpServer, sec, n.SmtpFrom, strings.Join(n.SmtpTo, ", "), auth)
	}
	if len(n.Webhooks) == 0 {
		fmt.Fprintf(w, "webhooks\toff\n")
	}
	for _, h := range n.Webhooks {
		fmt.Fprintf(w, "webhook\t%s (secret %s)\n", h.Url, map[bool]string{true: "set", false: "NOT set"}[h.SecretSet])
	}
	if n.SmtpServer != "" || len(n.Webhooks) > 0 {
		var on, off []string
		for _, e := range n.Events {
			if e.Enabled {
				on = append(on, e.Event)
			} else {
				off = append(off, e.Event)
			}
		}
		fmt.Fprintf(w, "events sent\t%s\n", strings.Join(on, ", "))
		if len(off) > 0 {
			fmt.Fprintf(w, "events off\t%s\n", strings.Join(off, ", "))
		}
		fmt.Fprintf(w, "disk threshold\t%d %%\nexpiry message at\t%02d:00 local\n", n.DiskPercent, n.ExpiryHour)
	}
}
