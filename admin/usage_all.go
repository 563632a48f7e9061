package admin

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/triadlm/triad/featver"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// The lmstat-grade view: every feature with its capacity, use and queue,
// and under it every holder (docs/admin.md, "Who holds what").

// featureView is one feature of `usage all`; its JSON is the -o json form.
type featureView struct {
	Feature  string        `json:"feature"`
	Model    string        `json:"model"`
	Capacity uint64        `json:"capacity"`
	InUse    uint64        `json:"in_use"`
	Queued   uint64        `json:"queued"`
	Versions []versionView `json:"versions"`
	Holders  []holderView  `json:"holders"`
}

type versionView struct {
	Version     uint32 `json:"version"`
	VersionText string `json:"version_text,omitempty"`
	Capacity    uint32 `json:"capacity"`
	InUse       uint32 `json:"in_use"`
	Queued      uint32 `json:"queued"`
}

// holderView is one lease under its feature. Version is the licensed one
// (the license entry the seat sits on); RequestedVersion what the client
// asked for (0: any). A dotted version's first component is in the number
// and its text in the *_text field.
type holderView struct {
	LeaseID              uint64 `json:"lease_id"`
	User                 string `json:"user"`
	Host                 string `json:"host"`
	Pid                  int64  `json:"pid"`
	Version              uint32 `json:"version"`
	VersionText          string `json:"version_text,omitempty"`
	RequestedVersion     uint32 `json:"requested_version"`
	RequestedVersionText string `json:"requested_version_text,omitempty"`
	Package              string `json:"package,omitempty"`
	LingerUntilUnixMs    int64  `json:"linger_until_unix_ms,omitempty"`
	IdleSinceUnixMs      int64  `json:"idle_since_unix_ms,omitempty"`
	Count                uint32 `json:"count"`
	SinceUnixMs          int64  `json:"since_unix_ms"`
	State                string `json:"state"`
	ViaMember            string `json:"via_member"`
	ExpiresUnixMs        int64  `json:"expires_unix_ms"`
}

// holderState is a lease's state word: lingering (released, its seat kept
// for its user and host), borrowed (offline, no renewals), idle (the
// product reports itself idle) or active.
func holderState(l *triadv1.Lease) string {
	switch {
	case l.GetLingering():
		return "lingering"
	case l.GetBorrowed():
		return "borrowed"
	case l.GetIdleSinceUnixMs() > 0:
		return "idle"
	}
	return "active"
}

// usageFilter is the --feature/--user/--host selection (exact matches).
type usageFilter struct{ feature, user, host string }

func (f usageFilter) lease(l *triadv1.Lease) bool {
	return (f.feature == "" || l.GetFeature() == f.feature) && (f.user == "" || l.GetUser() == f.user) && (f.host == "" || l.GetHost() == f.host)
}

// buildUsageView joins the feature rows and the live leases. With a user
// or host filter only features with a matching holder are listed.
func buildUsageView(rows []*triadv1.FeatureUsage, leases []*triadv1.Lease, f usageFilter) []featureView {
	var out []featureView
	index := map[string]int{}
	for _, r := range rows {
		if f.feature != "" && r.GetFeature() != f.feature {
			continue
		}
		i, ok := index[r.GetFeature()]
		if !ok {
			i = len(out)
			index[r.GetFeature()] = i
			out = append(out, featureView{Feature: r.GetFeature(), Model: r.GetModel(), Versions: []versionView{}, Holders: []holderView{}})
		}
		v := &out[i]
		v.Capacity += uint64(r.GetCapacity())
		v.InUse += uint64(r.GetInUse())
		v.Queued = max(v.Queued, uint64(r.GetQueueLength())) // the feature's queue, repeated on each version row
		v.Versions = append(v.Versions, versionView{r.GetVersion(), r.GetVersionText(), r.GetCapacity(), r.GetInUse(), r.GetQueueLength()})
	}
	for _, l := range leases {
		if !f.lease(l) {
			continue
		}
		i, ok := index[l.GetFeature()]
		if !ok { // a lease whose feature no valid license grants any more
			i = len(out)
			index[l.GetFeature()] = i
			out = append(out, featureView{Feature: l.GetFeature(), Versions: []versionView{}, Holders: []holderView{}})
		}
		v, vt := l.GetLicensedVersion(), l.GetLicensedVersionText()
		if v == 0 && vt == "" {
			v, vt = l.GetVersion(), l.GetVersionText()
		}
		var lingerUntil int64
		if l.GetLingering() {
			lingerUntil = l.GetLingerUntilUnixMs()
		}
		out[i].Holders = append(out[i].Holders, holderView{
			LeaseID: l.GetLeaseId(), User: l.GetUser(), Host: l.GetHost(), Pid: l.GetPid(), Version: v, VersionText: vt,
			RequestedVersion: l.GetVersion(), RequestedVersionText: l.GetVersionText(), Package: l.GetPackage(),
			LingerUntilUnixMs: lingerUntil, IdleSinceUnixMs: l.GetIdleSinceUnixMs(),
			Count: l.GetCount(), SinceUnixMs: l.GetGrantedUnixMs(), State: holderState(l), ViaMember: l.GetViaMember(), ExpiresUnixMs: l.GetExpiresUnixMs(),
		})
	}
	if f.user == "" && f.host == "" {
		return out
	}
	kept := out[:0]
	for _, v := range out {
		if len(v.Holders) > 0 {
			kept = append(kept, v)
		}
	}
	return kept
}

// licensedVersion is the version a listing shows for a lease: the licensed
// one, or the requested one from a member that does not say.
func licensedVersion(l *triadv1.Lease) string {
	if v, vt := l.GetLicensedVersion(), l.GetLicensedVersionText(); v != 0 || vt != "" {
		return featver.Display(v, vt)
	}
	return featver.Display(l.GetVersion(), l.GetVersionText())
}

func printUsageView(c *cli.Context, w io.Writer, view []featureView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, f := range view {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		model := f.Model
		if model == "" {
			model = "no valid license"
		}
		fmt.Fprintf(tw, "%s: %d licensed, %d in use, %d queued (%s)\n", f.Feature, f.Capacity, f.InUse, f.Queued, model)
		if len(f.Versions) > 1 {
			for _, v := range f.Versions {
				fmt.Fprintf(tw, "  version %s: %d licensed, %d in use, %d queued\n", featver.Display(v.Version, v.VersionText), v.Capacity, v.InUse, v.Queued)
			}
		}
		if len(f.Holders) == 0 {
			continue
		}
		tableHeader(c, tw, "  USER\tHOST\tPID\tVERSION\tSINCE\tLEASE\tCOUNT\tSTATE")
		for _, h := range f.Holders {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n", h.User, h.Host, h.Pid, featver.Display(h.Version, h.VersionText), fmtMs(h.SinceUnixMs), h.LeaseID, h.Count, h.State)
		}
	}
	tw.Flush()
}

func usageFilterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "feature", Aliases: []string{"f"}, Usage: "only this feature"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "only holders with this user name"},
		&cli.StringFlag{Name: "host", Usage: "only holders on this host"},
		&cli.BoolFlag{Name: "consistent", Usage: "read through the leader (linearizable)"},
	}
}

// usageAll is the action of `usage` and `usage all`.
func usageAll(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unknown usage command %q: see `triadctl usage --help`", c.Args().First())
	}
	filter := usageFilter{c.String("feature"), c.String("user"), c.String("host")}
	type both struct {
		rows   []*triadv1.FeatureUsage
		leases []*triadv1.Lease
	}
	r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (both, error) {
		fr, err := a.UsageFeatures(ctx, &triadv1.UsageFeaturesRequest{Header: h, Consistent: c.Bool("consistent")})
		if err != nil {
			return both{}, err
		}
		lr, err := a.UsageLeases(ctx, &triadv1.UsageLeasesRequest{Header: h, Consistent: c.Bool("consistent")})
		if err != nil {
			return both{}, err
		}
		return both{fr.GetFeatures(), lr.GetLeases()}, nil
	})
	if err != nil {
		return err
	}
	view := buildUsageView(r.rows, r.leases, filter)
	if jsonOutput(c) {
		if view == nil {
			view = []featureView{}
		}
		return printJSON(stdout(c), view)
	}
	if len(view) == 0 {
		fmt.Fprintln(stdout(c), "no feature matches")
		return nil
	}
	printUsageView(c, stdout(c), view)
	return nil
}

func usageReleaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "force-release leases (full mode) by id or, as lmremove does, every lease of --user/--host/--feature",
		Description: `Frees stuck seats. Give lease ids (see triadctl usage leases) or a
selector: every live lease matching all of --user, --host and --feature
given is released, and the released leases are listed. A running client
whose lease is released may check out again at its next renewal; to keep a
user off a feature, use an access rule (docs/rules.md). A lease id that was
never granted is an error (exit 1); one that already ended is reported and
is not an error.`,
		ArgsUsage: "[LEASE_ID...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "feature", Aliases: []string{"f"}, Usage: "release the leases of this feature"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "release the leases of this user"},
			&cli.StringFlag{Name: "host", Usage: "release the leases held on this host"},
		},
		Action: func(c *cli.Context) error {
			sel := usageFilter{c.String("feature"), c.String("user"), c.String("host")}
			selector := sel != usageFilter{}
			var ids []uint64
			for _, a := range c.Args().Slice() {
				id, err := strconv.ParseUint(a, 10, 64)
				if err != nil || id == 0 {
					return fmt.Errorf("%q is not a lease id: give lease ids (see `triadctl usage leases`) or --user/--host/--feature", a)
				}
				ids = append(ids, id)
			}
			switch {
			case selector && len(ids) > 0:
				return fmt.Errorf("give lease ids or --user/--host/--feature, not both")
			case !selector && len(ids) == 0:
				return fmt.Errorf("say what to release: lease ids (triadctl usage release 12 13) or a selector (--user, --host, --feature); an empty selector would release every lease and is refused")
			}
			var reqs []*triadv1.UsageReleaseRequest
			if selector {
				reqs = append(reqs, &triadv1.UsageReleaseRequest{User: sel.user, Host: sel.host, Feature: sel.feature, RequestId: rand.Text()})
			}
			for _, id := range ids {
				reqs = append(reqs, &triadv1.UsageReleaseRequest{LeaseId: id, RequestId: rand.Text()})
			}
			type outcome struct {
				LeaseID  uint64 `json:"lease_id,omitempty"`
				Released bool   `json:"released"`
				Error    string `json:"error,omitempty"`
			}
			var released []*triadv1.Lease
			var outcomes []outcome
			var failed []string
			for _, req := range reqs {
				r, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.UsageReleaseResponse, error) {
					req.Header = h
					return a.UsageRelease(ctx, req)
				})
				if err != nil {
					if req.LeaseId == 0 {
						return err
					}
					failed = append(failed, err.Error())
					outcomes = append(outcomes, outcome{LeaseID: req.LeaseId, Error: err.Error()})
					continue
				}
				released = append(released, r.GetLeases()...)
				if req.LeaseId != 0 {
					outcomes = append(outcomes, outcome{LeaseID: req.LeaseId, Released: r.GetReleased()})
				}
			}
			if jsonOutput(c) {
				err := printJSON(stdout(c), map[string]any{"released": len(released), "leases": protoList(released), "ids": outcomes})
				if err == nil && len(failed) > 0 {
					err = fmt.Errorf("%s", failed[0])
				}
				return err
			}
			out := stdout(c)
			for _, o := range outcomes {
				if o.Error == "" && !o.Released {
					fmt.Fprintf(out, "lease %d had already ended (released or expired): nothing to do\n", o.LeaseID)
				}
			}
			if selector && len(released) == 0 {
				fmt.Fprintln(out, "no live lease matches: nothing released")
			}
			if len(released) > 0 {
				fmt.Fprintf(out, "released %d lease(s):\n", len(released))
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				tableHeader(c, tw, "  LEASE\tFEATURE\tVERSION\tCOUNT\tUSER\tHOST\tPID")
				for _, l := range released {
					fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%s\t%s\t%d\n", l.GetLeaseId(), l.GetFeature(), licensedVersion(l), l.GetCount(), l.GetUser(), l.GetHost(), l.GetPid())
				}
				tw.Flush()
				fmt.Fprintln(out, "a client still running may check out again at its next renewal; to keep it out, add an access rule (docs/rules.md)")
			}
			switch len(failed) {
			case 0:
				return nil
			case 1:
				return fmt.Errorf("%s", failed[0])
			}
			return fmt.Errorf("%d of %d lease ids failed; first: %s", len(failed), len(ids), failed[0])
		},
	}
}
