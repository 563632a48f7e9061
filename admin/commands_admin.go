package admin

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/proto/triadv1"
)

func printSettings(w io.Writer, st *triadv1.ServerSettings) {
	if st == nil {
		return
	}
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "\nsession idle timeout\t%s\nisolation notice\t%d min\nstatistics\t%s\nautomatic recycling\t%s\nremote administration\t%s\nfull password\t%s\nrestricted password\t%s\nactivated\t%v\n",
		time.Duration(st.SessionIdleTimeoutMs)*time.Millisecond, st.IsolationMinutes, onOff[st.Statistics], onOff[st.AutoRecycling],
		st.RemotePolicy, map[bool]string{true: "set", false: "not set"}[st.FullPasswordSet],
		map[bool]string{true: "set", false: "not set"}[st.RestrictedPasswordSet], st.Activated)
	if st.HistoryHourDays > 0 {
		fmt.Fprintf(w, "history per minute\t%d days\nhistory per hour\t%d days\n", st.HistoryMinuteDays, st.HistoryHourDays)
	}
}

func printSessions(w io.Writer, ss []*triadv1.AdminSession) {
	fmt.Fprintln(w, "\nSESSION\tMODE\tORIGIN\tOPENED\tLAST USED")
	for _, s := range ss {
		id := s.Id
		if s.Yours {
			id += " (this one)"
		}
		if s.MemberOnly {
			id += " (member only)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", id, s.Mode, s.Origin, fmtMs(s.OpenedUnixMs), fmtMs(s.LastUsedUnixMs))
	}
}

func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", v)
}

func serverSetCommand() *cli.Command {
	return &cli.Command{
		Name:  "set",
		Usage: "change cluster settings (full mode); give only the ones to change",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "idle-timeout", Usage: "close administration sessions idle this long (1s to 24h; default 30m)"},
			&cli.UintFlag{Name: "isolation-minutes", Usage: "report a member isolated after reaching neither peer this long (1-60)"},
			&cli.StringFlag{Name: "statistics", Usage: "license usage statistics: on or off"},
			&cli.StringFlag{Name: "auto-recycling", Usage: "automatic recycling: on or off"},
			&cli.StringFlag{Name: "remote-policy", Usage: "remote administration: full, restricted or none"},
			&cli.UintFlag{Name: "expiry-warning-days", Usage: "raise an alarm this many days before a license ends (1-365; default 7)"},
			&cli.UintFlag{Name: "history-minute-days", Usage: "keep per-minute usage history this many days (1-3650; default 14)"},
			&cli.UintFlag{Name: "history-hour-days", Usage: "keep per-hour usage history this many days (1-3650; default 730)"},
		},
		Action: func(c *cli.Context) error {
			req := &triadv1.ServerSetRequest{}
			if c.IsSet("idle-timeout") {
				v := c.Duration("idle-timeout").Milliseconds()
				req.SessionIdleTimeoutMs = &v
			}
			if c.IsSet("isolation-minutes") {
				v := uint32(c.Uint("isolation-minutes"))
				req.IsolationMinutes = &v
			}
			for _, f := range []struct {
				name string
				dst  **bool
			}{{"statistics", &req.Statistics}, {"auto-recycling", &req.AutoRecycling}} {
				if c.IsSet(f.name) {
					v, err := parseOnOff(c.String(f.name))
					if err != nil {
						return fmt.Errorf("--%s: %v", f.name, err)
					}
					*f.dst = &v
				}
			}
			if c.IsSet("expiry-warning-days") {
				v := uint32(c.Uint("expiry-warning-days"))
				req.ExpiryWarningDays = &v
			}
			if c.IsSet("history-minute-days") {
				v := uint32(c.Uint("history-minute-days"))
				req.HistoryMinuteDays = &v
			}
			if c.IsSet("history-hour-days") {
				v := uint32(c.Uint("history-hour-days"))
				req.HistoryHourDays = &v
			}
			if c.IsSet("remote-policy") {
				v := c.String("remote-policy")
				if v != PolicyFull && v != PolicyRestricted && v != PolicyNone {
					return fmt.Errorf("--remote-policy %q: use full, restricted or none", v)
				}
				req.RemotePolicy = &v
			}
			if c.NumFlags() == 0 {
				return fmt.Errorf("give at least one setting to change: see `triadctl server set --help`")
			}
			r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ServerSettings, error) {
				req.Header = h
				return a.ServerSet(ctx, req)
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			printSettings(w, r)
			return w.Flush()
		},
	}
}

func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func passwordCommand() *cli.Command {
	return &cli.Command{
		Name:  "password",
		Usage: "administration passwords",
		Subcommands: []*cli.Command{{
			Name:      "set",
			Usage:     "set or change the full or restricted password (full mode; the restricted one needs the full one set first)",
			ArgsUsage: "full|restricted",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "new-password-file", Usage: "read the new password from this file (else TRIAD_NEW_PASSWORD, else a prompt)"},
			},
			Action: func(c *cli.Context) error {
				which := c.Args().First()
				if c.NArg() != 1 || (which != ModeFull && which != ModeRestricted) {
					return fmt.Errorf("say which password: triadctl password set full|restricted")
				}
				var newPw string
				switch {
				case c.String("new-password-file") != "":
					p, err := readSecretFile(c.String("new-password-file"))
					if err != nil {
						return fmt.Errorf("read --new-password-file: %w", err)
					}
					newPw = p
				case os.Getenv("TRIAD_NEW_PASSWORD") != "":
					newPw = os.Getenv("TRIAD_NEW_PASSWORD")
				default:
					p1, ok := promptPassword("New " + which + " password: ")
					if !ok {
						return fmt.Errorf("no new password: give --new-password-file or TRIAD_NEW_PASSWORD (no terminal to prompt on)")
					}
					p2, _ := promptPassword("Repeat it: ")
					if p1 != p2 {
						return fmt.Errorf("the two passwords differ; nothing changed")
					}
					newPw = p1
				}
				return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.PasswordSetResponse, error) {
					// The current full password is the one this session was
					// opened with (file, environment or prompt); with a session
					// from --session, the file or environment.
					current, ok := connectPassword(ctx)
					if !ok {
						p, err := password(c)
						if err != nil {
							return nil, err
						}
						current = p
					}
					req := &triadv1.PasswordSetRequest{Header: h, Which: which, CurrentFullPassword: current, NewPassword: newPw}
					r, err := a.PasswordSet(ctx, req)
					if st := status.Convert(err); current == "" && st.Code() == codes.PermissionDenied && strings.Contains(st.Message(), "current full password") {
						// Opened without a password (none was set then, or
						// the session is a script's): ask for it.
						if p, ok := promptPassword("Current full password: "); ok && p != "" {
							req.CurrentFullPassword = p
							return a.PasswordSet(ctx, req)
						}
					}
					return r, err
				}, func(r *triadv1.PasswordSetResponse) {
					fmt.Fprintln(stdout(c), r.Message)
				})
			},
		}},
	}
}

func licenseShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show one enrolled license",
		ArgsUsage: "SERIAL",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("give the license serial: triadctl license show SERIAL (see `license list`)")
			}
			l, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.LicenseInfo, error) {
				return a.LicenseShow(ctx, &triadv1.LicenseShowRequest{Header: h, Serial: c.Args().First()})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), l)
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "serial\t%s\ncustomer\t%s\nstate\t%s\nissued\t%s\nvalid after\t%s\nvalid until\t%s\nenrolled\t%s\nbinding\t%s %s\nsupersedes\t%s\n\n",
				l.Serial, l.Customer, l.State, fmtMs(l.IssuedAtUnixMs), fmtMs(l.ValidAfterUnixMs), fmtMs(l.ValidUntilUnixMs),
				fmtMs(l.EnrolledUnixMs), l.BindingMode, strings.Join(l.ComputerIds, ","), strings.Join(l.Supersedes, ","))
			tableHeader(c, w, "FEATURE\tVERSION\tSEATS\tGRACE")
			for _, f := range l.Features {
				fmt.Fprintf(w, "%s\t%s\t%d\t%ds\n", f.Name+componentsNote(f.Components), featver.Display(f.Version, f.VersionText), f.Count, f.GraceSeconds)
			}
			return w.Flush()
		},
	}
}

func licenseRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove an enrolled license from the cluster (full mode); live leases stay until released or expired; with seats of its features in use it needs --yes",
		ArgsUsage: "SERIAL",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "remove it even though seats of its features are in use (never prompts: scripts stay safe)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("give the license serial: triadctl license remove SERIAL")
			}
			serial := c.Args().First()
			reqID := rand.Text() // one per action, the same on every member tried
			r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.LicenseRemoveResponse, error) {
				if !c.Bool("yes") {
					if err := removeInUse(ctx, a, h, serial); err != nil {
						return nil, err
					}
				}
				return a.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: h, Serial: serial, RequestId: reqID})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			fmt.Fprintln(stdout(c), r.Message)
			return nil
		},
	}
}

func usageUsersCommand() *cli.Command {
	return &cli.Command{
		Name:  "users",
		Usage: "seats in use per user and host, from the live leases",
		Action: func(c *cli.Context) error {
			r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageUsersResponse, error) {
				return a.UsageUsers(ctx, &triadv1.UsageUsersRequest{Header: h})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), protoList(r.Users))
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			tableHeader(c, w, "USER\tHOST\tFEATURE\tVERSION\tSEATS\tLEASES\tSINCE\tNAMED SEAT LAST USED")
			for _, u := range r.Users {
				last := "-"
				if u.Named {
					last = fmtMs(u.LastUsedUnixMs)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", u.User, u.Host, u.Feature, featver.Display(u.Version, u.VersionText), u.Seats, u.Leases, fmtMs(u.OldestGrantedUnixMs), last)
			}
			return w.Flush()
		},
	}
}

func usageDenialsCommand() *cli.Command {
	return &cli.Command{
		Name:  "denials",
		Usage: "checkout denials per feature and reason, cluster-wide (the replicated usage history), while statistics are on",
		Action: func(c *cli.Context) error {
			r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageDenialsResponse, error) {
				return a.UsageDenials(ctx, &triadv1.UsageDenialsRequest{Header: h})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			if r.SinceUnixMs == 0 {
				fmt.Fprintln(w, "the usage history has not started yet (the leader starts it once every member runs format 4): no denial counted")
			} else {
				fmt.Fprintf(w, "denials in the cluster since %s (answered by %s)\n", fmtMs(r.SinceUnixMs), r.Member)
			}
			if r.StatisticsOff {
				fmt.Fprintln(w, "statistics are off (triadctl server set --statistics on): new denials are logged, not counted")
			}
			fmt.Fprintln(w)
			tableHeader(c, w, "FEATURE\tREASON\tCOUNT\tLAST")
			for _, d := range r.Denials {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", d.Feature, d.Reason, d.Count, fmtMs(d.LastUnixMs))
			}
			return w.Flush()
		},
	}
}

// removeInUse refuses to remove a license while live leases hold seats of
// a feature it grants, naming them: removing it can leave them over
// capacity (they stay until released or expired). The check reads through
// the leader.
func removeInUse(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader, serial string) error {
	l, err := a.LicenseShow(ctx, &triadv1.LicenseShowRequest{Header: h, Serial: serial})
	if err != nil {
		return err
	}
	grants := map[string]bool{}
	for _, f := range l.GetFeatures() {
		grants[f.GetName()] = true
	}
	ls, err := a.UsageLeases(ctx, &triadv1.UsageLeasesRequest{Header: h, Consistent: true})
	if err != nil {
		return err
	}
	var seats uint64
	var ids []string
	for _, lease := range ls.GetLeases() {
		if grants[lease.GetFeature()] {
			seats += uint64(lease.GetCount())
			ids = append(ids, fmt.Sprint(lease.GetLeaseId()))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > 10 {
		ids = append(ids[:10], "...")
	}
	return status.Errorf(codes.FailedPrecondition, "license %s grants features with %d seat(s) in use (leases %s): removing it can leave them over capacity; they stay until released or expired. Run again with --yes to remove it anyway",
		serial, seats, strings.Join(ids, ", "))
}
