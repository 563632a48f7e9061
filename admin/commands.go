package admin

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/internal/pbjson"
	"github.com/triadlm/triad/proto/triadv1"
)

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "the member contacted",
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "show name, computer ID, mode and addresses",
			Action: func(c *cli.Context) error {
				r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ServerShowResponse, error) {
					return a.ServerShow(ctx, &triadv1.ServerShowRequest{Header: h})
				})
				if err != nil {
					return err
				}
				if jsonOutput(c) {
					return printJSON(stdout(c), r)
				}
				w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				fmt.Fprintf(w, "name\t%s\ncomputer ID\t%s\nmode\t%s\nversion\t%s\naddress\t%s\nraft address\t%s\nhttp address\t%s\ndata dir\t%s\n",
					r.Name, r.ComputerId, r.Mode, r.Version, r.Address, r.RaftAddress, r.HttpAddress, r.DataDir)
				if r.Pid != 0 {
					fmt.Fprintf(w, "pid\t%d\n", r.Pid)
				}
				printSettings(w, r.Settings)
				printSessions(w, r.Sessions)
				printNotify(w, r.Notifications)
				return w.Flush()
			},
		}, serverSetCommand(), verifyAuditCommand(), testMailCommand(), testWebhookCommand()},
	}
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "form the cluster and see its health",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "form the cluster once: --members A,B,C (licensing addresses) or --standalone",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "members", Usage: "the three members' licensing addresses, HOST:PORT, comma separated"},
					&cli.BoolFlag{Name: "standalone", Usage: "form a one-member cluster (permanent choice)"},
				},
				Action: func(c *cli.Context) error {
					var members []string
					for _, m := range c.StringSlice("members") {
						for _, p := range strings.Split(m, ",") {
							if p = strings.TrimSpace(p); p != "" {
								members = append(members, p)
							}
						}
					}
					if !c.Bool("standalone") && len(members) == 0 {
						return fmt.Errorf("pass --members A,B,C (the three members' licensing addresses) or --standalone")
					}
					r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ClusterCreateResponse, error) {
						return a.ClusterCreate(ctx, &triadv1.ClusterCreateRequest{Header: h, Members: members, Standalone: c.Bool("standalone")})
					})
					if err != nil {
						return err
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), r)
					}
					fmt.Fprintf(stdout(c), "formed a %s cluster; leader: %s\n", r.Mode, r.Leader)
					w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
					tableHeader(c, w, "NAME\tADDRESS\tCOMPUTER ID")
					for _, m := range r.Members {
						fmt.Fprintf(w, "%s\t%s\t%s\n", m.Name, m.Address, m.ComputerId)
					}
					return w.Flush()
				},
			},
			{Name: "status", Usage: "status word, leader, members, links, alarms and recent events; exit status 0 operational, 1 partially operational, 2 not operational, 3 unknown",
				Description: statusExitDoc, Flags: watchFlags(), Action: watch(clusterStatus(true))},
			{Name: "links", Usage: "the three links between members", Flags: watchFlags(), Action: watch(clusterStatus(false))},
			replaceMemberCommand(),
		},
	}
}

// memberVersion is a member's version and command format as its last
// heartbeat reported them (useful during rolling upgrades).
func memberVersion(m *triadv1.Member) string {
	if m.Version == "" {
		return "?"
	}
	return fmt.Sprintf("%s (format %d)", m.Version, m.FormatVersion)
}

func clusterStatus(full bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		r, err := bestClusterStatus(c)
		if err != nil {
			if full {
				return cli.Exit(fmt.Sprintf("triadctl: cluster status unknown: %v", err), ExitUnknown)
			}
			return err
		}
		if jsonOutput(c) {
			if !full {
				return printJSON(stdout(c), protoList(r.Links))
			}
			if err := printJSON(stdout(c), r); err != nil {
				return err
			}
			return statusExit(r.Status)
		}
		w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
		if r.Isolated {
			fmt.Fprintf(w, "!! %s reaches neither peer: this view may be stale; ask another member\n\n", r.Member)
		}
		if full {
			leader := r.Leader
			if leader == "" {
				leader = "(none)"
			}
			fmt.Fprintf(w, "status\t%s\nmode\t%s\nleader\t%s\nterm\t%d\ncommit index\t%d\nanswered by\t%s\n\n", r.Status, r.Mode, leader, r.Term, r.CommitIndex, r.Member)
			tableHeader(c, w, "MEMBER\tADDRESS\tROLE\tCOMPUTER ID\tVERSION")
			for _, m := range r.Members {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address, m.Role, m.ComputerId, memberVersion(m))
			}
			fmt.Fprintln(w)
		}
		tableHeader(c, w, "LINK\tSTATE")
		for _, l := range r.Links {
			since := ""
			if l.State == "down" && l.DownSinceUnixMs > 0 {
				since = " since " + fmtMs(l.DownSinceUnixMs)
			}
			fmt.Fprintf(w, "%s – %s\t%s%s\n", l.A, l.B, l.State, since)
		}
		if full {
			fmt.Fprintln(w)
			if len(r.Alarms) == 0 {
				fmt.Fprintln(w, "alarms\tnone")
			}
			for _, a := range r.Alarms {
				fmt.Fprintf(w, "ALARM %s\t%s (since %s)\n", a.Kind, a.Message, fmtMs(a.SinceUnixMs))
			}
			if ev := r.Events; len(ev) > 0 {
				fmt.Fprintf(w, "\nRECENT EVENTS (%s)\n", r.Member)
				for _, e := range ev[max(0, len(ev)-maxStatusEvents):] {
					fmt.Fprintf(w, "%s\t%s\t%s\n", fmtMs(e.AtUnixMs), e.Kind, e.Message)
				}
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if full {
			return statusExit(r.Status)
		}
		return nil
	}
}

// Exit statuses of `cluster status`, as a monitoring plugin's (Nagios
// convention: OK, WARNING, CRITICAL, UNKNOWN).
const (
	ExitOperational          = 0
	ExitPartiallyOperational = 1
	ExitNotOperational       = 2
	ExitUnknown              = 3
)

// maxStatusEvents is how many recent events `cluster status` prints.
const maxStatusEvents = 10

const statusExitDoc = `Prints the status word, leader, members, links, active alarms and the
recent events of the member that answered (the first of --server that
answers; when it does not say operational, the other members of --server
are asked too and the best-informed view is shown: a member cut off from
the others sees less than the two still connected). The exit status says
the same, like a monitoring plugin's:

   0  operational            (three members up and connected, a leader)
   1  partially operational  (a leader, one member down or cut off)
   2  not operational        (no leader or no quorum: licenses are not served)
   3  unknown                (no member answered, or the request failed)

With --watch the command refreshes until Ctrl-C and exits 0.`

// statusExit turns a status word into the command's exit status (nil for
// operational); its message is empty, so nothing more is printed.
func statusExit(word string) error {
	switch word {
	case "operational":
		return nil
	case "partially operational":
		return cli.Exit("", ExitPartiallyOperational)
	default:
		return cli.Exit("", ExitNotOperational)
	}
}

func licenseCommand() *cli.Command {
	return &cli.Command{
		Name:  "license",
		Usage: "enroll, list, show and remove licenses",
		Subcommands: []*cli.Command{
			{
				Name:      "enroll",
				Usage:     "enroll a signed license file on the whole cluster",
				ArgsUsage: "FILE.lic",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("give exactly one license file: triadctl license enroll FILE.lic")
					}
					data, err := os.ReadFile(c.Args().First())
					if err != nil {
						return fmt.Errorf("read license file: %w", err)
					}
					r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.LicenseEnrollResponse, error) {
						return a.LicenseEnroll(ctx, &triadv1.LicenseEnrollRequest{Header: h, LicenseFile: data})
					})
					if err != nil {
						return err
					}
					if jsonOutput(c) {
						v := pbjson.Value(r.License).(map[string]any)
						v["already_enrolled"] = r.AlreadyEnrolled
						return printJSON(stdout(c), v)
					}
					if r.AlreadyEnrolled {
						fmt.Fprintf(stdout(c), "license %s for %s is already enrolled (%s): nothing changed\n", r.License.Serial, r.License.Customer, r.License.State)
						return nil
					}
					fmt.Fprintf(stdout(c), "enrolled license %s for %s (%s)\n", r.License.Serial, r.License.Customer, r.License.State)
					return nil
				},
			},
			licenseShowCommand(),
			licenseRemoveCommand(),
			{
				Name:  "list",
				Usage: "list enrolled licenses",
				Action: func(c *cli.Context) error {
					r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.LicenseListResponse, error) {
						return a.LicenseList(ctx, &triadv1.LicenseListRequest{Header: h})
					})
					if err != nil {
						return err
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), protoList(r.Licenses))
					}
					w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
					tableHeader(c, w, "SERIAL\tCUSTOMER\tSTATE\tVALID UNTIL\tFEATURES")
					for _, l := range r.Licenses {
						var fs []string
						for _, f := range l.Features {
							fs = append(fs, fmt.Sprintf("%s v%s ×%d%s", f.Name, featver.Display(f.Version, f.VersionText), f.Count, componentsNote(f.Components)))
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.Serial, l.Customer, l.State, fmtMs(l.ValidUntilUnixMs), strings.Join(fs, ", "))
					}
					return w.Flush()
				},
			},
		},
	}
}

// poolUse describes a countdown feature's pool use, "3.2 h of 10 h used",
// or "-" for other models.
func poolUse(f *triadv1.FeatureUsage) string {
	if f.GetModel() != "countdown" {
		return "-"
	}
	used := strconv.FormatFloat(f.GetPoolUsedSeconds()/3600, 'f', 1, 64)
	pool := strconv.FormatFloat(f.GetPoolSeconds()/3600, 'f', -1, 64)
	return fmt.Sprintf("%s h of %s h used", used, pool)
}

func usageCommand() *cli.Command {
	return &cli.Command{
		Name:   "usage",
		Usage:  "seats in use: alone (or `usage all`), every feature with capacity, use, queue and holders",
		Flags:  usageFilterFlags(),
		Action: usageAll,
		Subcommands: []*cli.Command{
			{
				Name:   "all",
				Usage:  "every feature with capacity, in use, queued, and each holder (user, host, pid, licensed version, since, lease, count, state), like lmstat -a",
				Flags:  usageFilterFlags(),
				Action: usageAll,
			},
			{
				Name:  "features",
				Usage: "capacity and seats in use per feature and version",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "consistent", Usage: "read through the leader (linearizable)"}},
				Action: func(c *cli.Context) error {
					r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.FeaturesResponse, error) {
						return a.UsageFeatures(ctx, &triadv1.UsageFeaturesRequest{Header: h, Consistent: c.Bool("consistent")})
					})
					if err != nil {
						return err
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), protoList(r.Features))
					}
					w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
					tableHeader(c, w, "FEATURE\tVERSION\tCAPACITY\tIN USE\tPOOL\tQUEUED")
					for _, f := range r.Features {
						fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%d\n", inPackage(f.Feature, f.Package, "  "), featver.Display(f.Version, f.VersionText), f.Capacity, f.InUse, poolUse(f), f.QueueLength)
					}
					return w.Flush()
				},
			},
			usageUsersCommand(),
			usageDenialsCommand(),
			usageRecycleCommand(),
			usageReleaseCommand(),
			{
				Name:  "leases",
				Usage: "every live lease",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "consistent", Usage: "read through the leader (linearizable)"}},
				Action: func(c *cli.Context) error {
					r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageLeasesResponse, error) {
						return a.UsageLeases(ctx, &triadv1.UsageLeasesRequest{Header: h, Consistent: c.Bool("consistent")})
					})
					if err != nil {
						return err
					}
					if jsonOutput(c) {
						return printJSON(stdout(c), protoList(r.Leases))
					}
					w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
					tableHeader(c, w, "LEASE\tFEATURE\tVERSION\tCOUNT\tUSER\tHOST\tPID\tGRANTED\tRENEWED\tVIA\tBORROWED UNTIL\tSTATE")
					for _, l := range r.Leases {
						until := "-"
						if l.Borrowed {
							until = fmtMs(l.ExpiresUnixMs)
						}
						fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", l.LeaseId, inPackage(l.Feature, l.Package, ""), licensedVersion(l), l.Count, l.User, l.Host, l.Pid, fmtMs(l.GrantedUnixMs), fmtMs(l.RenewedUnixMs), l.ViaMember, until, leaseState(l))
					}
					return w.Flush()
				},
			},
			usageQueueCommand(),
		},
	}
}

func watchFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "refresh until Ctrl-C"},
		&cli.DurationFlag{Name: "interval", Usage: "refresh interval with --watch", Value: time.Second},
	}
}

// watch repeats a display action with --watch, clearing the terminal
// between refreshes; an unreachable member shows as an error line and the
// watch goes on.
func watch(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if !c.Bool("watch") {
			return action(c)
		}
		ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		for {
			if !jsonOutput(c) {
				fmt.Fprint(stdout(c), "\033[H\033[2J")
				fmt.Fprintf(stdout(c), "%s   (every %s, Ctrl-C to stop)\n\n", time.Now().Format("15:04:05"), c.Duration("interval"))
			}
			if err := action(c); err != nil && err.Error() != "" {
				fmt.Fprintln(stdout(c), "error:", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.Duration("interval")):
			}
		}
	}
}

// inPackage names a component feature with its package: "cad (in suite)",
// indented by indent in listings that show it under the package's rows.
func inPackage(feature, pkg, indent string) string {
	if pkg == "" || pkg == feature {
		return feature
	}
	return indent + feature + " (in " + pkg + ")"
}

// componentsNote lists a package's components: " (package of cad, cam)".
func componentsNote(components []string) string {
	if len(components) == 0 {
		return ""
	}
	return " (package of " + strings.Join(components, ", ") + ")"
}

// leaseState is the STATE column of `usage leases`: held, borrowed, idle
// (the holder reports its product idle) or lingering (released, the seat
// kept for the same user and host until the time shown).
func leaseState(l *triadv1.Lease) string {
	switch {
	case l.GetLingering():
		return "lingering until " + fmtMs(l.GetLingerUntilUnixMs())
	case l.GetBorrowed():
		return "borrowed"
	case l.GetIdleSinceUnixMs() > 0:
		return "idle since " + fmtMs(l.GetIdleSinceUnixMs())
	}
	return "held"
}
