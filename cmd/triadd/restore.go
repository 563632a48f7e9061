package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/server"
)

// restoreCommand is `triadd restore`: rebuild this member's data
// directory from a backup, offline (docs/operator-guide.md, "Backup and
// restore").
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "rebuild this member's data directory from a backup (triadctl snapshot save), offline, on the machine it was taken from",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "snapshot", Usage: "the backup file", Required: true},
			&cli.StringFlag{Name: "data-dir", Usage: "the member's data directory: empty, or with its raft/ directory moved away", Required: true},
			&cli.StringFlag{Name: "name", Usage: "the member's name, as in the cluster (default: hostname)"},
			&cli.StringFlag{Name: "test-machine-id", Usage: "TEST ONLY: pretend this is the machine identity", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			name := c.String("name")
			if name == "" {
				h, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("no --name and no hostname: %w", err)
				}
				name = h
			}
			r, err := server.Restore(server.RestoreOptions{Backup: c.String("snapshot"), DataDir: c.String("data-dir"), Name: name, MachineID: c.String("test-machine-id")})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "restored member %s (computer ID %s) of cluster %s at Raft index %d, term %d: %d licenses, %d leases\n"+
				"start triadd with --name %s, --data-dir %s and the member's usual addresses\n",
				r.Member, r.ComputerID, r.ClusterID, r.Index, r.Term, r.Licenses, r.Leases, r.Member, c.String("data-dir"))
			return nil
		},
	}
}
