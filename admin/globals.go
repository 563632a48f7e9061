package admin

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
)

// globalCategory groups the global flags in a command's --help.
const globalCategory = "GLOBAL (also accepted before the command)"

// globalFlags are triadctl's global options. They are accepted before the
// command (`triadctl -o json cluster status`) and, as with kubectl and
// etcdctl, after it (`triadctl cluster status -o json`): every command
// with an action carries copies of them (see inheritGlobals).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "server", Aliases: []string{"s"}, Usage: "member licensing address HOST:PORT (repeatable or comma list; the first that answers is used)", EnvVars: []string{"TRIAD_SERVER"}, Value: cli.NewStringSlice("127.0.0.1:4085")},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "table or json (JSON numbers are numbers); triadctl report also csv", Value: "table"},
		&cli.BoolFlag{Name: "no-headers", Usage: "tables: leave out the column header line"},
		&cli.DurationFlag{Name: "timeout", Usage: "time limit of one command", Value: 30 * time.Second},
		&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, Usage: "session mode: full or restricted (default: restricted for reading commands, full for changes)"},
		&cli.StringFlag{Name: "password-file", Usage: "read the administration password from this file (else the TRIAD_PASSWORD environment variable, else a prompt when one is needed)"},
		&cli.StringFlag{Name: "session", Usage: "use this session TOKEN, printed by triadctl connect, instead of connecting for this command", EnvVars: []string{"TRIAD_SESSION"}},
		&cli.BoolFlag{Name: "local", Usage: "connect through the member's Unix socket (local administrator; needs --data-dir)"},
		&cli.StringFlag{Name: "data-dir", Usage: "with --local: the member's data directory"},
		&cli.StringFlag{Name: "source-ip", Usage: "local IP address to connect from (multi-homed hosts)"},
		&cli.StringFlag{Name: "ca", Usage: "CA certificate(s) the members' certificates must chain to (the cluster CA; default: the system's roots)", EnvVars: []string{"TRIAD_CA"}},
		&cli.StringFlag{Name: "cert", Usage: "client certificate to present (members started with --tls-client-ca ask for one)", EnvVars: []string{"TRIAD_CERT"}},
		&cli.StringFlag{Name: "key", Usage: "private key of --cert", EnvVars: []string{"TRIAD_KEY"}},
		&cli.BoolFlag{Name: "insecure", Usage: "talk to members in plaintext (only members started with --insecure)", EnvVars: []string{"TRIAD_INSECURE"}},
	}
}

// localCopy is a global flag as a command carries it: same names, usage and
// default, no environment variables (the root reads those, so an explicit
// global flag before the command is not overridden by the environment at
// the command), in the GLOBAL help category.
func localCopy(f cli.Flag) cli.Flag {
	switch f := f.(type) {
	case *cli.StringSliceFlag:
		return &cli.StringSliceFlag{Name: f.Name, Aliases: f.Aliases, Usage: f.Usage, Value: cli.NewStringSlice(f.Value.Value()...), Category: globalCategory}
	case *cli.StringFlag:
		return &cli.StringFlag{Name: f.Name, Aliases: f.Aliases, Usage: f.Usage, Value: f.Value, Category: globalCategory}
	case *cli.BoolFlag:
		return &cli.BoolFlag{Name: f.Name, Aliases: f.Aliases, Usage: f.Usage, Value: f.Value, Category: globalCategory}
	case *cli.DurationFlag:
		return &cli.DurationFlag{Name: f.Name, Aliases: f.Aliases, Usage: f.Usage, Value: f.Value, Category: globalCategory}
	}
	panic(fmt.Sprintf("global flag %v of type %T has no local copy", f.Names(), f))
}

// inheritGlobals gives every command with an action (recursively) copies
// of the global flags it does not define itself (vendor issue's own --key
// keeps its meaning there), and a Before that resolves them: a value given
// after the command wins, else the value given before it (or from the
// environment, or the default).
func inheritGlobals(cmds []*cli.Command) {
	for _, cmd := range cmds {
		inheritGlobals(cmd.Subcommands)
		if cmd.Action == nil {
			continue
		}
		var taken []string
		for _, f := range cmd.Flags {
			taken = append(taken, f.Names()...)
		}
		var copied []cli.Flag
		for _, f := range globalFlags() {
			if slices.ContainsFunc(f.Names(), func(n string) bool { return slices.Contains(taken, n) }) {
				continue
			}
			copied = append(copied, f)
			cmd.Flags = append(cmd.Flags, localCopy(f))
		}
		before := cmd.Before
		cmd.Before = func(c *cli.Context) error {
			if err := adoptGlobals(c, copied); err != nil {
				return err
			}
			if err := checkGlobals(c); err != nil {
				return err
			}
			if c.String("output") == "csv" && !underReport(c) {
				return fmt.Errorf("--output csv is for triadctl report only: use table or json here")
			}
			if before != nil {
				return before(c)
			}
			return nil
		}
	}
}

// adoptGlobals copies into the command's flags the global values set
// before the command, unless the same flag was given after it.
func adoptGlobals(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		name := f.Names()[0]
		if c.IsSet(name) {
			continue
		}
		var root *cli.Context // the nearest enclosing context that has it set
		for _, a := range c.Lineage()[1:] {
			if a.IsSet(name) {
				root = a
				break
			}
		}
		if root == nil {
			continue
		}
		var vals []string
		switch f.(type) {
		case *cli.StringSliceFlag:
			vals = root.StringSlice(name)
		case *cli.StringFlag:
			vals = []string{root.String(name)}
		case *cli.BoolFlag:
			vals = []string{strconv.FormatBool(root.Bool(name))}
		case *cli.DurationFlag:
			vals = []string{root.Duration(name).String()}
		}
		for _, v := range vals {
			if err := c.Set(name, v); err != nil {
				return fmt.Errorf("--%s %q: %v", name, v, err)
			}
		}
	}
	return nil
}

// underReport tells whether the command runs under `triadctl report`.
func underReport(c *cli.Context) bool {
	for _, a := range c.Lineage() {
		if a.Command != nil && a.Command.Name == "report" {
			return true
		}
	}
	return false
}

// checkGlobals validates the global flags wherever they were given.
func checkGlobals(c *cli.Context) error {
	if o := c.String("output"); o != "table" && o != "json" && o != "csv" {
		return fmt.Errorf("--output %q is not supported: use table, json or csv (csv: triadctl report only)", o)
	}
	if m := c.String("mode"); m != "" && m != ModeFull && m != ModeRestricted {
		return fmt.Errorf("--mode %q is not supported: use full or restricted", m)
	}
	if c.Bool("local") && c.String("data-dir") == "" {
		return fmt.Errorf("--local needs --data-dir DIR, the member's data directory (its admin socket is DIR/admin.sock)")
	}
	return nil
}

// tableHeader writes a table's column header line unless --no-headers.
func tableHeader(c *cli.Context, w io.Writer, line string) {
	if !c.Bool("no-headers") {
		fmt.Fprintln(w, line)
	}
}
