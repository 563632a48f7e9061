package admin

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// replace-member takes its flags before or after OLD.
func TestReplaceMemberArgs(t *testing.T) {
	var got replaceArgsT
	app := App()
	for _, c := range app.Commands {
		if c.Name == "cluster" {
			for _, sc := range c.Subcommands {
				if sc.Name == "replace-member" {
					sc.Action = func(c *cli.Context) error {
						var err error
						got, err = replaceArgs(c)
						return err
					}
				}
			}
		}
	}
	run := func(args ...string) error {
		got = replaceArgsT{}
		return app.Run(append([]string{"triadctl", "cluster", "replace-member"}, args...))
	}
	if err := run("charlie", "--with", "h:1", "--license", "a.lic", "--license=b.lic", "--force"); err != nil {
		t.Fatal(err)
	}
	if got.old != "charlie" || got.with != "h:1" || strings.Join(got.licenses, ",") != "a.lic,b.lic" || !got.force {
		t.Fatalf("flags after OLD: %+v", got)
	}
	if err := run("--with", "h:2", "--license", "c.lic", "charlie"); err != nil || got.with != "h:2" || got.old != "charlie" || got.force {
		t.Fatalf("flags before OLD: %+v %v", got, err)
	}
	for args, want := range map[string]string{
		"charlie --license a.lic":            "--with",
		"charlie --with h:1":                 "--license",
		"--with h:1 --license a.lic":         "name the member",
		"charlie delta --with h --license a": "one member",
		"charlie --with":                     "needs a value",
		"charlie --bogus x":                  "unknown flag",
	} {
		if err := run(strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}
