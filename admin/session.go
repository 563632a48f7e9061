package admin

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

// How triadctl carries a session: each invocation connects (Connect RPC),
// runs its command with the token and disconnects at exit, so the
// one-full-session rule applies to the tool that is actually running. A
// script that needs one session across commands opens it with
// `triadctl connect`, passes the token in TRIAD_SESSION (or --session) and
// ends it with `triadctl disconnect`.

// target is one member to try: a TCP address or the local socket.
type target struct {
	name string // for messages
	dial string // grpc target
}

func targets(c *cli.Context) ([]target, error) {
	if c.Bool("local") {
		dir, err := filepath.Abs(c.String("data-dir"))
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "admin.sock")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no local admin socket %s (%v): is triadd running with --data-dir %s, on this host?", path, err, dir)
		}
		return []target{{name: path, dial: "unix://" + path}}, nil
	}
	var out []target
	for _, s := range servers(c) {
		out = append(out, target{name: s, dial: s})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no --server given")
	}
	return out, nil
}

// tlsChoice reads the global TLS flags: a TLS configuration, or nil for
// plaintext (--insecure).
func tlsChoice(c *cli.Context) (*tls.Config, error) {
	if c.Bool("insecure") {
		if c.String("ca") != "" || c.String("cert") != "" {
			return nil, fmt.Errorf("--insecure and --ca/--cert exclude each other: drop --insecure to use TLS")
		}
		return nil, nil
	}
	cfg, err := client.TLSConfig(c.String("ca"), c.String("cert"), c.String("key"))
	if err != nil {
		return nil, fmt.Errorf("%v (--ca, --cert, --key)", strings.TrimPrefix(err.Error(), "triad: "))
	}
	return cfg, nil
}

// clientOptions are the TLS choices of the global flags, for package client.
func clientOptions(c *cli.Context) ([]client.Option, error) {
	cfg, err := tlsChoice(c)
	switch {
	case err != nil:
		return nil, err
	case cfg == nil:
		return []client.Option{client.WithInsecure()}, nil
	}
	return []client.Option{client.WithTLS(cfg)}, nil
}

func transportCredentials(c *cli.Context) (credentials.TransportCredentials, error) {
	if c.Bool("local") {
		return insecure.NewCredentials(), nil // a Unix socket on the member's own host
	}
	cfg, err := tlsChoice(c)
	switch {
	case err != nil:
		return nil, err
	case cfg == nil:
		return insecure.NewCredentials(), nil
	}
	return credentials.NewTLS(cfg), nil
}

func dialTarget(c *cli.Context, t target) (*grpc.ClientConn, error) {
	creds, err := transportCredentials(c)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))}
	if ip := c.String("source-ip"); ip != "" && !c.Bool("local") {
		src := net.ParseIP(ip)
		if src == nil {
			return nil, fmt.Errorf("--source-ip %q is not an IP address", ip)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a)
		}))
	}
	return grpc.NewClient(t.dial, opts...)
}

// sessionMode is --mode, or what the command needs.
func sessionMode(c *cli.Context, need string) string {
	if m := c.String("mode"); m != "" {
		return m
	}
	return need
}

// password returns the password from --password-file or TRIAD_PASSWORD
// ("" when neither is given).
func password(c *cli.Context) (string, error) {
	if p := c.String("password-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("read --password-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv("TRIAD_PASSWORD"), nil
}

// promptPassword reads a password from the terminal without echo; false
// when there is no terminal. A variable, so that tests can answer prompts.
var promptPassword = terminalPassword

func terminalPassword(prompt string) (string, bool) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", false
	}
	fmt.Fprint(os.Stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// connect opens a session; when the member asks for a password that was
// not given, it prompts on a terminal. It returns the password the session
// was opened with, whatever its source ("" when none).
func connect(ctx context.Context, c *cli.Context, a triadv1.AdminClient, mode, where string) (*triadv1.ConnectResponse, string, error) {
	pw, err := password(c)
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; ; attempt++ {
		resp, err := a.Connect(ctx, &triadv1.ConnectRequest{Header: header(), Mode: mode, Password: pw})
		if err == nil {
			if resp.Notice != "" {
				fmt.Fprintf(errWriter(c), "triadctl: %s\n", resp.Notice)
			}
			return resp, pw, nil
		}
		st := status.Convert(err)
		if st.Code() == codes.Unauthenticated && pw == "" && attempt == 0 && strings.HasPrefix(st.Message(), "password required") {
			if p, ok := promptPassword(fmt.Sprintf("Password (%s mode) for %s: ", mode, where)); ok && p != "" {
				pw = p
				continue
			}
		}
		return nil, "", err
	}
}

type connectPasswordKey struct{}

// connectPassword returns the password this command's session was opened
// with; false when the session came from --session (no connect here).
func connectPassword(ctx context.Context) (string, bool) {
	pw, ok := ctx.Value(connectPasswordKey{}).(string)
	return pw, ok
}

// adminCall runs f against the first member that answers, within a session
// of the mode the command needs (or --mode): the one given with --session,
// or one opened for this command and closed afterwards.
func adminCall[T any](c *cli.Context, need string, f func(context.Context, triadv1.AdminClient, *triadv1.AdminHeader) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	var zero T
	ts, err := targets(c)
	if err != nil {
		return zero, err
	}
	var lastErr error
	for _, t := range ts {
		conn, err := dialTarget(c, t)
		if err != nil {
			lastErr = fmt.Errorf("%s: %v", t.name, err)
			continue
		}
		v, err := callWithSession(ctx, c, conn, t.name, need, f)
		conn.Close()
		if err == nil {
			return v, nil
		}
		if status.Code(err) != codes.Unavailable {
			return zero, cliError(t.name, err)
		}
		lastErr = cliError(t.name, err)
	}
	return zero, lastErr
}

func callWithSession[T any](ctx context.Context, c *cli.Context, conn *grpc.ClientConn, where, need string, f func(context.Context, triadv1.AdminClient, *triadv1.AdminHeader) (T, error)) (T, error) {
	a := triadv1.NewAdminClient(conn)
	h := header()
	if tok := c.String("session"); tok != "" {
		h.SessionToken = tok
		return f(ctx, a, h)
	}
	var zero T
	resp, pw, err := connect(ctx, c, a, sessionMode(c, need), where)
	if err != nil {
		return zero, err
	}
	ctx = context.WithValue(ctx, connectPasswordKey{}, pw)
	h.SessionToken = resp.SessionToken
	defer func() {
		// Best effort: a session left behind closes when idle.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		a.Disconnect(dctx, &triadv1.DisconnectRequest{Header: h})
	}()
	return f(ctx, a, h)
}

func errWriter(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:  "connect",
		Usage: "open a session for scripts: prints its token; pass it in TRIAD_SESSION, end it with `triadctl disconnect`",
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			ts, err := targets(c)
			if err != nil {
				return err
			}
			var lastErr error
			for _, t := range ts {
				conn, err := dialTarget(c, t)
				if err != nil {
					lastErr = fmt.Errorf("%s: %v", t.name, err)
					continue
				}
				resp, _, err := connect(ctx, c, triadv1.NewAdminClient(conn), sessionMode(c, ModeFull), t.name)
				conn.Close()
				if err != nil {
					lastErr = cliError(t.name, err)
					if status.Code(err) == codes.Unavailable {
						continue
					}
					return lastErr
				}
				if jsonOutput(c) {
					return printJSON(stdout(c), resp)
				}
				w := bufio.NewWriter(stdout(c))
				fmt.Fprintf(w, "export TRIAD_SESSION=%s\n", resp.SessionToken)
				fmt.Fprintf(w, "# %s session on %s as %s; closes after %s idle\n", resp.Mode, resp.Member, resp.Origin, time.Duration(resp.IdleTimeoutMs)*time.Millisecond)
				return w.Flush()
			}
			return lastErr
		},
	}
}

func disconnectCommand() *cli.Command {
	return &cli.Command{
		Name:  "disconnect",
		Usage: "end the session given in TRIAD_SESSION or --session",
		Action: func(c *cli.Context) error {
			if c.String("session") == "" {
				return fmt.Errorf("no session to end: set TRIAD_SESSION or pass --session TOKEN")
			}
			_, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.DisconnectResponse, error) {
				return a.Disconnect(ctx, &triadv1.DisconnectRequest{Header: h})
			})
			if err != nil {
				return err
			}
			if !jsonOutput(c) {
				fmt.Fprintln(stdout(c), "session closed")
			} else {
				printJSON(stdout(c), map[string]bool{"closed": true})
			}
			return nil
		},
	}
}
