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
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/proto/triadv1"
)

// App is the triadctl command tree.
func App() *cli.App {
	return &cli.App{
		Name:                 "triadctl",
		Usage:                "administer a Triad license cluster",
		Version:              buildinfo.Get().String(),
		Description:          appDescription,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "server", Aliases: []string{"s"}, Usage: "member licensing address HOST:PORT (repeatable or comma list; the first that answers is used)", EnvVars: []string{"TRIAD_SERVER"}, Value: cli.NewStringSlice("127.0.0.1:4085")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "table or json (triadctl report: also csv)", Value: "table"},
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
		},
		Before: func(c *cli.Context) error {
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
		},
		Commands: []*cli.Command{
			connectCommand(), disconnectCommand(), serverCommand(), passwordCommand(), clusterCommand(), licenseCommand(), usageCommand(),
			rulesCommand(), checkoutCommand(), vendorCommand(), benchCommand(), completionCommand(),
			versionCommand(),
			snapshotCommand(),
			reportCommand(),
		},
	}
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
// the proto field names.
func printJSON(w io.Writer, v any) error {
	if m, ok := v.(proto.Message); ok {
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			return err
		}
		v = x
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// protoList turns messages into plain JSON values (for JSON arrays).
func protoList[T proto.Message](ms []T) []any {
	out := make([]any, 0, len(ms))
	for _, m := range ms {
		b, _ := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		var x any
		json.Unmarshal(b, &x)
		out = append(out, x)
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
