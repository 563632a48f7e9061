package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/internal/pbjson"
	"github.com/triadlm/triad/proto/triadv1"
)

// App is the triadctl command tree.
func App() *cli.App {
	app := &cli.App{
		Name:                 "triadctl",
		Usage:                "administer a Triad license cluster",
		Version:              buildinfo.Get().String(),
		Description:          appDescription,
		EnableBashCompletion: true,
		Flags:                globalFlags(),
		Before:               checkGlobals,
		Commands: []*cli.Command{
			connectCommand(), disconnectCommand(), serverCommand(), passwordCommand(), clusterCommand(), licenseCommand(), usageCommand(),
			rulesCommand(), checkoutCommand(), vendorCommand(), benchCommand(), completionCommand(),
			versionCommand(),
			snapshotCommand(),
			traceCommand(),
			reportCommand(),
		},
	}
	inheritGlobals(app.Commands)
	completeFeatures(app.Commands)
	return app
}

// appDescription lists the environment variables triadctl reads.
const appDescription = `Environment:
   TRIAD_SERVER        member addresses, as --server
   TRIAD_SESSION       a session token from triadctl connect, as --session
   TRIAD_PASSWORD      the administration password (when --password-file is not given;
                       else triadctl prompts when the member asks for one)
   TRIAD_NEW_PASSWORD  the new password of triadctl password set (else --new-password-file or a prompt)

Shell completion: source <(triadctl completion bash), or triadctl completion zsh.`

// servers returns the --server list, split on commas.
func servers(c *cli.Context) []string {
	var out []string
	for _, s := range c.StringSlice("server") {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func jsonOutput(c *cli.Context) bool { return c.String("output") == "json" }

func header() *triadv1.AdminHeader {
	return &triadv1.AdminHeader{ProtocolVersion: ProtocolVersion, ToolVersion: ToolVersion}
}

func cliError(addr string, err error) error {
	st := status.Convert(err)
	if st.Code() == codes.Unavailable {
		return fmt.Errorf("%s: member unreachable (%s): check that triadd runs there and the address is right", addr, st.Message())
	}
	return fmt.Errorf("%s: %s", addr, st.Message())
}

// printJSON writes a protobuf message or any value as indented JSON with
// the proto field names; integers, 64-bit ones included, are JSON numbers
// (internal/pbjson), never strings.
func printJSON(w io.Writer, v any) error {
	if m, ok := v.(proto.Message); ok {
		v = pbjson.Value(m)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// protoList turns messages into plain JSON values (for JSON arrays).
func protoList[T proto.Message](ms []T) []any {
	out := make([]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, pbjson.Value(m))
	}
	return out
}

func fmtMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
}

func stdout(c *cli.Context) io.Writer {
	if c.App.Writer != nil {
		return c.App.Writer
	}
	return os.Stdout
}
