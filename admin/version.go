package admin

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/proto/triadv1"
)

// versionCommand prints triadctl's build and, like kubectl version, the
// version of every member given by --server (no session needed: Discover);
// --client prints triadctl's alone, without contacting anything.
func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "triadctl's version, commit and Go version, and each --server member's version (--client: triadctl's only)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "client", Usage: "print triadctl's version only, contacting no member"},
			&cli.BoolFlag{Name: "members", Usage: "ask each --server member for its version (the default; kept for scripts)"},
		},
		Action: func(c *cli.Context) error {
			bi := buildinfo.Get()
			type memberVersion struct {
				Address string `json:"address"`
				Name    string `json:"name,omitempty"`
				Version string `json:"version,omitempty"`
				Error   string `json:"error,omitempty"`
			}
			var members []memberVersion
			if !c.Bool("client") {
				ts, err := targets(c)
				if err != nil {
					return err
				}
				for _, t := range ts {
					mv := memberVersion{Address: t.name}
					if d, err := discoverOne(c, t); err != nil {
						mv.Error = err.Error()
					} else {
						mv.Name, mv.Version = d.GetName(), d.GetVersion()
					}
					members = append(members, mv)
				}
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), struct {
					buildinfo.Info
					Members []memberVersion `json:"members,omitempty"`
				}{bi, members})
			}
			fmt.Fprintf(stdout(c), "triadctl %s\n", bi)
			if len(members) == 0 {
				return nil
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			tableHeader(c, w, "\nMEMBER\tADDRESS\tVERSION")
			for _, m := range members {
				v := m.Version
				if m.Error != "" {
					v = "unreachable: " + m.Error
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", m.Name, m.Address, v)
			}
			return w.Flush()
		},
	}
}

func discoverOne(c *cli.Context, t target) (*triadv1.DiscoverResponse, error) {
	conn, err := dialTarget(c, t)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.Context, min(c.Duration("timeout"), 5*time.Second))
	defer cancel()
	d, err := triadv1.NewAdminClient(conn).Discover(ctx, &triadv1.DiscoverRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s", status.Convert(err).Message())
	}
	return d, nil
}
