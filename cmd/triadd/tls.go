package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/server/pki"
)

// tlsCommand makes a cluster CA and certificates for sites without a PKI.
func tlsCommand() *cli.Command {
	return &cli.Command{
		Name:  "tls",
		Usage: "make a cluster CA and member or client certificates (sites without a PKI)",
		Subcommands: []*cli.Command{
			{
				Name:      "init-ca",
				Usage:     "make a new cluster CA (ca.crt, ca.key) in --dir",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Usage: "directory for ca.crt and ca.key (created; an existing CA is never overwritten)", Required: true},
					&cli.StringFlag{Name: "name", Usage: "CA common name", Value: "Triad cluster CA"},
					&cli.DurationFlag{Name: "validity", Usage: "how long the CA is valid", Value: pki.CAValidity},
				},
				Action: func(c *cli.Context) error {
					ca, err := pki.NewCA(c.String("name"), c.Duration("validity"))
					if err != nil {
						return err
					}
					if err := ca.Save(c.String("dir")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "CA written: %s/%s (give it to members with --tls-ca and to clients with --ca); keep %s/%s secret and offline\n",
						c.String("dir"), pki.CACertFile, c.String("dir"), pki.CAKeyFile)
					return nil
				},
			},
			{
				Name:      "issue",
				Usage:     "issue a member certificate (--member NAME --host ...) or a client certificate (--client NAME)",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Usage: "directory holding ca.crt and ca.key", Required: true},
					&cli.StringFlag{Name: "member", Usage: "member name (as --name of its triadd): a member certificate"},
					&cli.StringFlag{Name: "client", Usage: "client name (an administrator or a licensed application): a client certificate"},
					&cli.StringSliceFlag{Name: "host", Usage: "host name or IP address the member is reached at (repeatable or comma list; every name and address clients use)"},
					&cli.StringFlag{Name: "out", Usage: "directory for NAME.crt and NAME.key", Value: "."},
					&cli.DurationFlag{Name: "validity", Usage: "how long the certificate is valid", Value: pki.CertValidity},
				},
				Action: func(c *cli.Context) error {
					member, client := c.String("member"), c.String("client")
					if (member == "") == (client == "") {
						return fmt.Errorf("give exactly one of --member NAME (a member certificate) or --client NAME (a client certificate)")
					}
					ca, err := pki.LoadCA(c.String("ca-dir"))
					if err != nil {
						return err
					}
					kind, name := pki.Member, member
					if client != "" {
						kind, name = pki.Client, client
					}
					var hosts []string
					for _, h := range c.StringSlice("host") {
						hosts = append(hosts, strings.Split(h, ",")...)
					}
					is, err := ca.Issue(kind, name, hosts, c.Duration("validity"))
					if err != nil {
						return err
					}
					certPath, keyPath, err := pki.WriteIssued(c.String("out"), name, is)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "certificate %s and key %s written\n", certPath, keyPath)
					return nil
				},
			},
		},
	}
}
