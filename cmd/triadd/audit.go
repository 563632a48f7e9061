package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/admin"
)

// auditCommand checks audit files offline, on the member's host, without a
// running member or a session: `triadd audit verify --data-dir DIR` or
// `triadd audit verify FILE...`.
func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "the member's hash-chained audit log",
		Subcommands: []*cli.Command{{
			Name:      "verify",
			Usage:     "check the chain of audit files (oldest first) or of DATA_DIR/audit; names the first broken record",
			ArgsUsage: "[FILE|DIR...]",
			Flags:     []cli.Flag{&cli.StringFlag{Name: "data-dir", Usage: "verify this member's DATA_DIR/audit"}},
			Action: func(c *cli.Context) error {
				paths := c.Args().Slice()
				if d := c.String("data-dir"); d != "" {
					paths = append(paths, filepath.Join(d, "audit"))
				}
				if len(paths) == 0 {
					return fmt.Errorf("give audit files (oldest first), a directory, or --data-dir DIR")
				}
				rep, err := admin.VerifyAuditFiles(paths)
				if err != nil {
					return err
				}
				if rep.Broken != nil {
					return fmt.Errorf("audit log broken at %s (intact up to seq %d)", rep.Broken, rep.LastSeq)
				}
				fmt.Fprintf(c.App.Writer, "audit chain intact: %d files, %d records, last seq %d, hash %s\n", len(rep.Files), rep.Records, rep.LastSeq, rep.LastHash)
				return nil
			},
		}},
	}
}
