package admin

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/license"
)

func vendorCommand() *cli.Command {
	return &cli.Command{
		Name:  "vendor",
		Usage: "vendor tools: signing keys and license files",
		Subcommands: []*cli.Command{
			{
				Name:  "keygen",
				Usage: "make an Ed25519 key pair: PREFIX.key (secret) and PREFIX.pub (give to members with --trust)",
				Flags: []cli.Flag{&cli.StringFlag{Name: "out", Required: true, Usage: "file name prefix"}},
				Action: func(c *cli.Context) error {
					pub, priv, err := license.GenerateKey(rand.Reader)
					if err != nil {
						return err
					}
					prefix := c.String("out")
					for _, f := range []string{prefix + ".key", prefix + ".pub"} {
						if _, err := os.Stat(f); err == nil {
							return fmt.Errorf("%s already exists: refusing to overwrite a vendor key (choose another --out)", f)
						}
					}
					if err := writeNew(prefix+".key", license.EncodePrivateKey(priv), 0o600); err != nil {
						return err
					}
					if err := writeNew(prefix+".pub", license.EncodePublicKey(pub), 0o644); err != nil {
						return err
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), map[string]string{"key": prefix + ".key", "pub": prefix + ".pub", "key_id": license.KeyID(pub)})
					}
					fmt.Fprintf(stdout(c), "wrote %s.key (keep secret) and %s.pub (key id %s)\n", prefix, prefix, license.KeyID(pub))
					return nil
				},
			},
			{
				Name:  "issue",
				Usage: "sign a license file bound to the members' computer IDs",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key", Required: true, Usage: "vendor private key file"},
					&cli.StringFlag{Name: "customer", Required: true},
					&cli.StringFlag{Name: "computer-ids", Required: true, Usage: "the members' computer IDs, comma separated (3 for failover, 1 for standalone)"},
					&cli.StringSliceFlag{Name: "feature", Required: true, Usage: "NAME:VERSION:COUNT (repeatable)"},
					&cli.StringFlag{Name: "valid-until", Required: true, Usage: "YYYY-MM-DD (inclusive, UTC)"},
					&cli.StringFlag{Name: "valid-after", Usage: "YYYY-MM-DD (default: now)"},
					&cli.StringFlag{Name: "serial", Usage: "serial number (default: generated)"},
					&cli.StringSliceFlag{Name: "supersedes", Usage: "serials this license replaces"},
					&cli.UintFlag{Name: "grace", Usage: "client grace period in seconds for every feature (0: 2 h)"},
					&cli.StringFlag{Name: "out", Required: true, Usage: "output .lic file"},
				},
				Action: issue,
			},
			{
				Name:      "inspect",
				Usage:     "print a license file and whether its signature verifies",
				ArgsUsage: "FILE.lic",
				Flags:     []cli.Flag{&cli.StringSliceFlag{Name: "trust", Usage: "vendor public key file"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("give exactly one license file")
					}
					data, err := os.ReadFile(c.Args().First())
					if err != nil {
						return err
					}
					f, err := license.Parse(data)
					if err != nil {
						return err
					}
					verdict := "not checked (pass --trust VENDOR.pub)"
					if paths := c.StringSlice("trust"); len(paths) > 0 {
						keys, err := readPublicKeys(paths)
						if err != nil {
							return err
						}
						if err := f.Verify(keys); err != nil {
							verdict = "INVALID: " + err.Error()
						} else {
							verdict = "valid"
						}
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), map[string]any{"body": f.Body, "key_id": f.KeyID, "signature": verdict})
					}
					for _, l := range license.Describe(&f.Body) {
						fmt.Fprintln(stdout(c), l)
					}
					fmt.Fprintf(stdout(c), "key id: %s\nsignature: %s\n", f.KeyID, verdict)
					return nil
				},
			},
		},
	}
}

func readPublicKeys(paths []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := license.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func issue(c *cli.Context) error {
	kb, err := os.ReadFile(c.String("key"))
	if err != nil {
		return fmt.Errorf("read vendor key: %w", err)
	}
	priv, err := license.ParsePrivateKey(kb)
	if err != nil {
		return fmt.Errorf("%s: %w", c.String("key"), err)
	}
	var ids []string
	for _, id := range strings.Split(c.String("computer-ids"), ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	mode := "failover"
	if len(ids) == 1 {
		mode = "standalone"
	}
	now := time.Now().UTC().Truncate(time.Second)
	body := license.Body{
		FormatVersion: 1, Serial: c.String("serial"), IssuedTo: c.String("customer"), IssuedAt: now,
		ValidAfter: now, Supersedes: c.StringSlice("supersedes"),
		Binding: license.Binding{Mode: mode, ComputerIDs: ids},
	}
	if body.Serial == "" {
		body.Serial = "TRIAD-" + strings.ToUpper(rand.Text()[:12])
	}
	if body.ValidUntil, err = license.ParseDate(c.String("valid-until")); err != nil {
		return fmt.Errorf("--valid-until: %w", err)
	}
	if s := c.String("valid-after"); s != "" {
		if body.ValidAfter, err = license.ParseStartDate(s); err != nil {
			return fmt.Errorf("--valid-after: %w", err)
		}
	}
	for _, spec := range c.StringSlice("feature") {
		f, err := license.ParseFeatureSpec(spec)
		if err != nil {
			return fmt.Errorf("--feature: %w", err)
		}
		f.GraceSeconds = uint32(c.Uint("grace"))
		body.Features = append(body.Features, f)
	}
	data, err := license.Sign(body, priv)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.String("out"), data, 0o644); err != nil {
		return err
	}
	if jsonOutput(c) {
		return printJSON(stdout(c), map[string]string{"serial": body.Serial, "file": c.String("out")})
	}
	fmt.Fprintf(stdout(c), "wrote license %s to %s\n", body.Serial, c.String("out"))
	return nil
}

// writeNew creates path, failing if it exists (never overwrite a key).
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
