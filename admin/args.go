package admin

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// InterspersedArgs moves a command's flags given after its arguments
// before them (`triadctl license remove SERIAL --yes`, `triadctl usage
// release 12 -o json`): urfave/cli stops reading flags at the first
// argument, while kubectl and etcdctl users put flags anywhere. Tokens
// after "--" stay arguments. args starts with the program name.
func InterspersedArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	flags, cmds := app.Flags, app.Commands
	out := []string{args[0]}
	i := 1
	// Walk the command path: flags and command names in order.
	for ; i < len(args); i++ {
		tok := args[i]
		if tok == "--" || !strings.HasPrefix(tok, "-") || tok == "-" {
			if c := findCommand(cmds, tok); c != nil {
				out = append(out, tok)
				flags, cmds = c.Flags, c.Subcommands
				continue
			}
			break
		}
		out = append(out, tok)
		if takesValue(flags, tok) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	// The rest: flags first, then the arguments in their order.
	var flagToks, argToks []string
	for ; i < len(args); i++ {
		tok := args[i]
		switch {
		case tok == "--":
			argToks = append(argToks, args[i:]...)
			i = len(args)
		case strings.HasPrefix(tok, "-") && tok != "-":
			flagToks = append(flagToks, tok)
			if takesValue(flags, tok) && i+1 < len(args) {
				i++
				flagToks = append(flagToks, args[i])
			}
		default:
			argToks = append(argToks, tok)
		}
	}
	// Shell completion asks with this flag last; keep it last.
	const complete = "--generate-bash-completion"
	n := len(flagToks)
	if n > 0 && flagToks[n-1] == complete && len(argToks) > 0 {
		return append(append(append(out, flagToks[:n-1]...), argToks...), complete)
	}
	return append(append(out, flagToks...), argToks...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether tok (-x or --name, without =value) is a flag
// of flags that reads the next token as its value (not a bool flag).
func takesValue(flags []cli.Flag, tok string) bool {
	if strings.Contains(tok, "=") {
		return false
	}
	name := strings.TrimLeft(tok, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
