package main

import "github.com/urfave/cli/v2"

// notifyFlags are the command-line notification settings; the config
// file's "notify" object holds the rest (events, templates, per-webhook
// secrets): docs/notifications.md.
func notifyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "smtp-server", Usage: "mail server for notifications, HOST[:PORT] (port 25 by default)"},
		&cli.StringFlag{Name: "smtp-from", Usage: "sender address of notification mail"},
		&cli.StringSliceFlag{Name: "smtp-to", Usage: "recipient of notification mail (repeatable or comma list)"},
		&cli.BoolFlag{Name: "smtp-starttls", Usage: "upgrade the mail connection with STARTTLS (required by the server's offer)"},
		&cli.BoolFlag{Name: "smtp-tls", Usage: "connect to the mail server in TLS (SMTPS, port 465)"},
		&cli.StringFlag{Name: "smtp-tls-ca", Usage: "CA bundle (PEM) that signs the mail server's certificate (default: system roots)"},
		&cli.StringFlag{Name: "smtp-username", Usage: "mail server login (PLAIN; needs --smtp-starttls or --smtp-tls)"},
		&cli.StringFlag{Name: "smtp-password-file", Usage: "file holding the mail server password"},
		&cli.StringSliceFlag{Name: "webhook-url", Usage: "URL notifications are POSTed to as signed JSON (repeatable)"},
		&cli.StringFlag{Name: "webhook-secret-file", Usage: "file holding the HMAC-SHA256 secret of the --webhook-url endpoints"},
		&cli.IntFlag{Name: "notify-disk-percent", Usage: "notify when the data disk is this full, and at each further percent (1-99; default 80)"},
		&cli.StringFlag{Name: "test-disk-usage-file", Usage: "TEST ONLY: read the data disk's use in percent from this file", Hidden: true},
	}
}
