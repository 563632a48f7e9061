package admin

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// Shell completion: urfave/cli lists the completions itself when the last
// argument is --generate-bash-completion (App.EnableBashCompletion); these
// scripts only ask triadctl for them (after urfave/cli's autocomplete
// scripts).

const bashCompletion = `# bash completion for triadctl. Install:
#   source <(triadctl completion bash)                      # this shell
#   triadctl completion bash > /etc/bash_completion.d/triadctl  # every shell
_triadctl_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _triadctl_complete triadctl
`

const zshCompletion = `#compdef triadctl
# zsh completion for triadctl. Install:
#   source <(triadctl completion zsh)                 # this shell, after compinit
#   triadctl completion zsh > "${fpath[1]}/_triadctl"   # every shell
_triadctl() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n "${opts[1]}" ]]; then
    _describe 'triadctl' opts
  else
    _files
  fi
}
if [[ "${funcstack[1]}" == "_triadctl" ]]; then
  _triadctl "$@"
else
  compdef _triadctl triadctl
fi
`

func completionCommand() *cli.Command {
	script := func(name, text string) *cli.Command {
		return &cli.Command{
			Name:  name,
			Usage: "print the " + name + " completion script (source it, or save it where " + name + " loads completions)",
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("triadctl completion %s takes no argument", name)
				}
				_, err := io.WriteString(stdout(c), text)
				return err
			},
		}
	}
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: triadctl completion bash|zsh (see docs/admin.md)",
		ArgsUsage: "bash|zsh",
		Subcommands: []*cli.Command{
			script("bash", bashCompletion),
			script("zsh", zshCompletion),
		},
		Action: func(c *cli.Context) error {
			return fmt.Errorf("say which shell: triadctl completion bash|zsh (got %q)", c.Args().First())
		},
	}
}

// completeFeatureNames completes the value of --feature (-f) with the
// feature names the cluster knows (a restricted read, a short timeout,
// never a password prompt: a shell waiting on a completion must not hang);
// otherwise it completes flags and subcommands as urfave/cli does.
func completeFeatureNames(c *cli.Context) {
	args := os.Args
	if n := len(args); n >= 2 && args[n-1] == "--generate-bash-completion" {
		args = args[:n-1]
	}
	if len(args) == 0 || (args[len(args)-1] != "--feature" && args[len(args)-1] != "-f") {
		cli.DefaultCompleteWithFlags(c.Command)(c)
		return
	}
	for _, name := range featureNames(c) {
		fmt.Fprintln(stdout(c), name)
	}
}

// featureNames lists the features of the cluster for completion; nothing
// when no member answers without a password.
func featureNames(c *cli.Context) []string {
	// Before actions do not run for completions: take the global flags
	// given before the command here.
	var own []cli.Flag
	for _, f := range globalFlags() {
		for _, g := range c.Command.Flags {
			if slices.Contains(g.Names(), f.Names()[0]) {
				own = append(own, f)
				break
			}
		}
	}
	if adoptGlobals(c, own) != nil {
		return nil
	}
	old := promptPassword
	promptPassword = func(string) (string, bool) { return "", false }
	defer func() { promptPassword = old }()
	// A completion must be quick: at most 2 s, whatever --timeout says.
	if c.Duration("timeout") > 2*time.Second {
		c.Set("timeout", "2s")
	}
	r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.FeaturesResponse, error) {
		return a.UsageFeatures(ctx, &triadv1.UsageFeaturesRequest{Header: h})
	})
	if err != nil {
		return nil
	}
	var names []string
	for _, f := range r.GetFeatures() {
		if !slices.Contains(names, f.GetFeature()) {
			names = append(names, f.GetFeature())
		}
	}
	return names
}

// completeFeatures gives every command with a --feature flag the feature
// name completion (recursively).
func completeFeatures(cmds []*cli.Command) {
	for _, cmd := range cmds {
		completeFeatures(cmd.Subcommands)
		for _, f := range cmd.Flags {
			if slices.Contains(f.Names(), "feature") && cmd.BashComplete == nil {
				cmd.BashComplete = completeFeatureNames
			}
		}
	}
}
