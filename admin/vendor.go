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
		Usage: "vendor tools: signing keys and license files; the vendor keys the cluster trusts",
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
					&cli.StringFlag{Name: "spec", Usage: "JSON file with the body fields (see docs/license-format.md); flags override its values"},
					&cli.StringFlag{Name: "customer", Usage: "customer the license is issued to (spec: issued_to)"},
					&cli.StringFlag{Name: "computer-ids", Usage: "the members' computer IDs, comma separated (3 for failover, 1 for standalone)"},
					// Not a StringSliceFlag: that one splits at commas, which
					// separate a feature's options here.
					&cli.GenericFlag{Name: "feature", Value: &featureList{}, Usage: "NAME:VERSION:COUNT[,model=concurrent|named-user|countdown][,limit=hard|soft][,overdraft=N][,grace=2h][,borrow=72h][,hours=N] (repeatable; replaces the spec's features)"},
					&cli.StringFlag{Name: "valid-until", Usage: "YYYY-MM-DD (inclusive, UTC) or an RFC 3339 time"},
					&cli.StringFlag{Name: "valid-after", Usage: "YYYY-MM-DD or an RFC 3339 time (default: now)"},
					&cli.StringFlag{Name: "serial", Usage: "serial number (default: generated)"},
					&cli.StringSliceFlag{Name: "supersedes", Usage: "serials this license replaces"},
					&cli.UintFlag{Name: "grace", Usage: "client grace period in seconds for every feature without grace= (0: 2 h)"},
					&cli.StringFlag{Name: "description", Usage: "descriptive text stored in the license"},
					&cli.StringFlag{Name: "out", Required: true, Usage: "output .lic file"},
					&cli.BoolFlag{Name: "allow-expired", Usage: "sign even though --valid-until is already past (only to test how clusters refuse expired licenses)"},
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
						return fmt.Errorf("%s: %w", c.Args().First(), err)
					}
					verdict := "not checked (pass --trust VENDOR.pub)"
					var bad error
					if paths := c.StringSlice("trust"); len(paths) > 0 {
						keys, err := readPublicKeys(paths)
						if err != nil {
							return err
						}
						if err := f.Verify(keys); err != nil {
							verdict = "INVALID: " + err.Error()
							bad = cli.Exit(fmt.Sprintf("triadctl: %s: the signature does not verify with the --trust keys: %v", c.Args().First(), err), 1)
						} else {
							verdict = "valid"
						}
					}
					// The description is printed either way; a bad signature
					// also makes the exit status 1, so a script can check.
					if jsonOutput(c) {
						if err := printJSON(stdout(c), map[string]any{"body": f.Body, "key_id": f.KeyID, "signature": verdict}); err != nil {
							return err
						}
						return bad
					}
					for _, l := range license.Describe(&f.Body) {
						fmt.Fprintln(stdout(c), l)
					}
					fmt.Fprintf(stdout(c), "key id: %s\nsignature: %s\n", f.KeyID, verdict)
					return bad
				},
			},
			vendorTrustCommand(),
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
	now := time.Now()
	body, err := issueBody(c, now)
	if err != nil {
		return err
	}
	if body.ValidUntil.Before(now) && !c.Bool("allow-expired") {
		return fmt.Errorf("license %s would be expired already: valid until %s, and it is %s; give a later --valid-until (or --allow-expired to test refusals)",
			body.Serial, body.ValidUntil.UTC().Format("2006-01-02 15:04:05 UTC"), now.UTC().Format("2006-01-02 15:04:05 UTC"))
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

// issueBody merges the --spec file (if any) with the flags: a flag given on
// the command line replaces the spec's value, and --feature replaces the
// spec's whole feature list.
func issueBody(c *cli.Context, now time.Time) (license.Body, error) {
	spec := &license.IssueSpec{}
	if path := c.String("spec"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return license.Body{}, fmt.Errorf("--spec: %w", err)
		}
		if spec, err = license.ParseIssueSpec(data); err != nil {
			return license.Body{}, fmt.Errorf("--spec %s: %w", path, err)
		}
	}
	for flag, field := range map[string]*string{
		"serial": &spec.Serial, "customer": &spec.IssuedTo, "valid-after": &spec.ValidAfter,
		"valid-until": &spec.ValidUntil, "description": &spec.Description,
	} {
		if c.IsSet(flag) {
			*field = c.String(flag)
		}
	}
	if c.IsSet("supersedes") {
		spec.Supersedes = c.StringSlice("supersedes")
	}
	if c.IsSet("computer-ids") {
		var ids []string
		for _, id := range strings.Split(c.String("computer-ids"), ",") {
			if id = strings.TrimSpace(id); id != "" {
				ids = append(ids, id)
			}
		}
		// The mode follows the ids given, not the spec's mode.
		spec.Binding = license.Binding{ComputerIDs: ids}
	}
	grace := uint32(c.Uint("grace"))
	if c.IsSet("feature") {
		spec.Features = nil
		for _, arg := range *c.Generic("feature").(*featureList) {
			fs, err := license.ParseFeatureSpecs(arg)
			if err != nil {
				return license.Body{}, fmt.Errorf("--feature: %w", err)
			}
			for _, f := range fs {
				if f.GraceSeconds == 0 { // grace= in the feature beats --grace
					f.GraceSeconds = grace
				}
				spec.Features = append(spec.Features, f)
			}
		}
	} else if c.IsSet("grace") {
		for i := range spec.Features {
			spec.Features[i].GraceSeconds = grace
		}
	}
	switch {
	case spec.IssuedTo == "":
		return license.Body{}, fmt.Errorf("no customer: give --customer or issued_to in --spec")
	case len(spec.Binding.ComputerIDs) == 0:
		return license.Body{}, fmt.Errorf("no computer ids: give --computer-ids A,B,C (or one id for a standalone member) or binding.computer_ids in --spec")
	case len(spec.Features) == 0:
		return license.Body{}, fmt.Errorf("no features: give --feature NAME:VERSION:COUNT (repeatable) or features in --spec")
	case spec.ValidUntil == "":
		return license.Body{}, fmt.Errorf("no end date: give --valid-until YYYY-MM-DD or valid_until in --spec")
	}
	if spec.Serial == "" {
		spec.Serial = "TRIAD-" + strings.ToUpper(rand.Text()[:12])
	}
	// Check dates given as flags here, so an error names the flag; what is
	// left for Body to refuse came from the spec.
	if _, err := license.ParseDate(spec.ValidUntil); err != nil && c.IsSet("valid-until") {
		return license.Body{}, fmt.Errorf("--valid-until: %w", err)
	}
	if _, err := license.ParseStartDate(spec.ValidAfter); err != nil && c.IsSet("valid-after") {
		return license.Body{}, fmt.Errorf("--valid-after: %w", err)
	}
	body, err := spec.Body(now)
	if err != nil {
		return license.Body{}, fmt.Errorf("--spec %s: %w", c.String("spec"), err)
	}
	return body, nil
}

// featureList collects repeated --feature values without splitting them.
type featureList []string

func (l *featureList) Set(s string) error { *l = append(*l, s); return nil }
func (l *featureList) String() string     { return strings.Join(*l, " ") }

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
