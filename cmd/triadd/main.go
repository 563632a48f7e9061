// Command triadd runs one member of a Triad license cluster.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/server"
)

func main() {
	server.RouteGRPCLogs()
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "triadd:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "triadd",
		Usage:   "run one member of a Triad license cluster",
		Version: server.VersionLine(),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "JSON config file with the same keys as the flags (flags win)"},
			&cli.StringFlag{Name: "name", Usage: "member name, unique in the cluster (default: hostname)"},
			&cli.StringFlag{Name: "data-dir", Usage: "data directory (Raft log, snapshots, computer ID)"},
			&cli.StringFlag{Name: "listen", Usage: "licensing and admin gRPC address", Value: server.DefaultListen},
			&cli.StringFlag{Name: "raft-listen", Usage: "failover (Raft) address", Value: server.DefaultRaftListen},
			&cli.StringFlag{Name: "raft-advertise", Usage: "Raft address other members dial, if not --raft-listen"},
			&cli.StringFlag{Name: "http-listen", Usage: "HTTP status address", Value: server.DefaultHTTPListen},
			&cli.StringFlag{Name: "peer-source-ip", Usage: "local IP for connections to other members (multi-homed hosts)"},
			&cli.IntFlag{Name: "isolation-minutes", Usage: "report 'member isolated' after reaching neither peer this long (1-60)", Value: 5},
			&cli.StringSliceFlag{Name: "trust", Usage: "vendor public key file to trust (repeatable)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "cluster CA certificate(s), PEM: members' and clients' certificates must chain to it"},
			&cli.StringFlag{Name: "tls-cert", Usage: "this member's certificate, PEM (triadd tls issue --member NAME)"},
			&cli.StringFlag{Name: "tls-key", Usage: "this member's private key, PEM"},
			&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA on the licensing port"},
			&cli.BoolFlag{Name: "http-tls", Usage: "serve the status port (dashboard, /metrics) over HTTPS with the member certificate"},
			&cli.BoolFlag{Name: "insecure", Usage: "run without TLS (plaintext passwords, tokens and failover traffic): only on a network you trust"},
			&cli.StringFlag{Name: "addr-file", Usage: "write the addresses listened on (JSON) to this file once listening; lets ports be 0"},
			&cli.StringFlag{Name: "log-file", Usage: "write the structured log here instead of stderr"},
			&cli.IntFlag{Name: "log-max-mb", Usage: "rotate the --log-file before it grows past this many megabytes (1-10240)", Value: server.DefaultLogMaxMB},
			&cli.IntFlag{Name: "log-keep", Usage: "rotated log files to keep next to --log-file (1-100)", Value: server.DefaultLogKeep},
			&cli.DurationFlag{Name: "lease-ttl", Usage: "default lease TTL", Value: server.DefaultLeaseTTL},
			&cli.DurationFlag{Name: "test-clock-offset", Usage: "TEST ONLY: shift this member's wall clock", Hidden: true},
			&cli.StringFlag{Name: "test-clock-file", Usage: "TEST ONLY: step this member's wall clock by the duration in this file, re-read while running", Hidden: true},
			&cli.DurationFlag{Name: "test-isolation-after", Usage: "TEST ONLY: isolation delay below one minute", Hidden: true},
			&cli.Uint64Flag{Name: "test-snapshot-threshold", Usage: "TEST ONLY: Raft log entries between snapshots (default 16384)", Hidden: true},
			&cli.Uint64Flag{Name: "test-trailing-logs", Usage: "TEST ONLY: Raft log entries kept after a snapshot (default 10240)", Hidden: true},
			&cli.DurationFlag{Name: "test-throttle-every", Usage: "TEST ONLY: one more administration password attempt per this long after the burst of 5 (default 5s)", Hidden: true},
			&cli.Uint64Flag{Name: "test-format-version", Usage: "TEST ONLY: apply and report Raft command formats up to N only, as the previous build would", Hidden: true},
			&cli.StringFlag{Name: "http-advertise", Usage: "base URL browsers reach this member's status port at, http[s]://HOST:PORT (default: from --http-listen, else the licensing address's host); the other members' dashboards poll it"},
			&cli.StringFlag{Name: "test-machine-id", Usage: "TEST ONLY: pretend this is the machine identity (/etc/machine-id)", Hidden: true},
			&cli.StringFlag{Name: "test-hold-reconcile-file", Usage: "TEST ONLY: while this file exists, a leader leaves Raft's voters as they are", Hidden: true},
			&cli.StringFlag{Name: "test-disk-fault-file", Usage: "TEST ONLY: while this file exists, writes to the Raft files fail (ENOSPC if it says enospc, else EIO)", Hidden: true},
		}, notifyFlags()...),
		Action:   run,
		Commands: []*cli.Command{tlsCommand(), auditCommand(), healthcheckCommand(), restoreCommand()},
	}
}

// configFrom reads the config file, if any, and lays the flags over it.
func configFrom(c server.FlagSource) (server.Config, error) {
	var cfg server.Config
	if p := c.String("config"); p != "" {
		if err := server.LoadConfigFile(p, &cfg); err != nil {
			return cfg, err
		}
	}
	return server.MergeFlags(cfg, c), nil
}

// defaultGCPercent is the garbage collector's heap target a member runs
// with unless the operator sets GOGC: the heap may grow 50 % over what is
// live between collections, not Go's default 100 %. A member's memory is
// mostly its held leases; at 100 % a member holding 100,000 leases kept
// ~1,300 B of RSS per lease, at 50 % ~1,000 B, with no measurable cost in
// CPU or throughput (docs/performance.md, "Garbage collector target").
const defaultGCPercent = 50

// tuneGC sets the collector's target to defaultGCPercent, with the heap
// floor minHeapTarget (gc.go), unless getenv says the operator chose one
// with GOGC (the runtime applied it at start). stop ends the floor.
func tuneGC(getenv func(string) string) (stop func()) {
	if getenv("GOGC") != "" {
		return func() {}
	}
	debug.SetGCPercent(defaultGCPercent)
	return keepHeapFloor(defaultGCPercent, minHeapTarget)
}

func run(c *cli.Context) error {
	defer tuneGC(os.Getenv)()
	cfg, err := configFrom(c)
	if err != nil {
		return err
	}
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	if cfg.LogFile != "" {
		// With the log on stderr (systemd's journal), every line there is
		// JSON: the log's "member started" line says the same.
		fmt.Fprintf(os.Stderr, "triadd %s: member %s listening on %s (http %s); log in %s\n", server.Version, cfg.Name, s.Addr(), s.HTTPAddr(), cfg.LogFile)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Stop()
	return nil
}
