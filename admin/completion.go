package admin

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
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
