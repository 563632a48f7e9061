package admin

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

func usageRecycleCommand() *cli.Command {
	return &cli.Command{
		Name:      "recycle",
		Usage:     "untie a named user idle for 30 days from a feature's seat (full mode)",
		ArgsUsage: "USER FEATURE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("give the user and the feature: triadctl usage recycle USER FEATURE (see `usage users`)")
			}
			reqID := rand.Text() // one per action, the same on every member tried
			return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageRecycleResponse, error) {
				return a.UsageRecycle(ctx, &triadv1.UsageRecycleRequest{Header: h, User: c.Args().Get(0), Feature: c.Args().Get(1), RequestId: reqID})
			}, func(r *triadv1.UsageRecycleResponse) {
				fmt.Fprintln(stdout(c), r.Message)
			})
		},
	}
}

func rulesCommand() *cli.Command {
	return &cli.Command{
		Name:  "rules",
		Usage: "access rules: who may use which feature (docs/rules.md)",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "replace the access rules with a rules file (full mode); an empty file clears them",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("give one rules file: triadctl rules set FILE")
					}
					text, err := os.ReadFile(c.Args().First())
					if err != nil {
						return fmt.Errorf("read rules file: %w", err)
					}
					return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.RulesShowResponse, error) {
						return a.RulesSet(ctx, &triadv1.RulesSetRequest{Header: h, Text: string(text)})
					}, func(r *triadv1.RulesShowResponse) {
						fmt.Fprintf(stdout(c), "access rules set: %d rule(s), %d group(s)\n", r.Rules, r.Groups)
					})
				},
			},
			{
				Name:  "show",
				Usage: "print the access rules in force",
				Action: func(c *cli.Context) error {
					return show(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.RulesShowResponse, error) {
						return a.RulesShow(ctx, &triadv1.RulesShowRequest{Header: h})
					}, func(r *triadv1.RulesShowResponse) {
						if r.Rules == 0 && r.Groups == 0 {
							fmt.Fprintln(stdout(c), "no access rules: every user and host may use every licensed feature")
							return
						}
						fmt.Fprint(stdout(c), r.Text)
					})
				},
			},
		},
	}
}

// show runs one admin call and prints its answer: as JSON with --output
// json, else through table.
func show[T proto.Message](c *cli.Context, mode string, call func(context.Context, triadv1.AdminClient, *triadv1.AdminHeader) (T, error), table func(T)) error {
	r, err := adminCall(c, mode, call)
	if err != nil {
		return err
	}
	if jsonOutput(c) {
		return printJSON(stdout(c), r)
	}
	table(r)
	return nil
}
