package admin

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// MemberReplacer is implemented by a Backend that can replace a dead
// member's machine (package server does).
type MemberReplacer interface {
	// ReplaceMember replaces member old by the unconfigured member at the
	// licensing address with, enrolling the license files (which must bind
	// the new set of computer IDs); force replaces a member still running.
	ReplaceMember(ctx context.Context, sessionID, old, with string, licenseFiles [][]byte, force bool) (*triadv1.ClusterReplaceMemberResponse, error)
}

// maxReplaceLicenses bounds the license files of one replacement.
const maxReplaceLicenses = 64

// ClusterReplaceMember replaces a dead member (full mode).
func (s *Service) ClusterReplaceMember(ctx context.Context, req *triadv1.ClusterReplaceMemberRequest) (*triadv1.ClusterReplaceMemberResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "cluster replace-member", true)
	if err != nil {
		return nil, err
	}
	r, ok := s.b.(MemberReplacer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this member cannot replace members")
	}
	if req.GetOld() == "" || req.GetWith() == "" {
		return nil, status.Error(codes.InvalidArgument, "name the dead member and give --with HOST:PORT, the new member's licensing address")
	}
	if n := len(req.GetLicenseFiles()); n == 0 || n > maxReplaceLicenses {
		return nil, status.Errorf(codes.InvalidArgument, "%d license files given: give 1 to %d with --license, binding the new set of computer IDs", n, maxReplaceLicenses)
	}
	for i, f := range req.GetLicenseFiles() {
		if n := len(f); n == 0 || n > maxLicenseFile {
			return nil, status.Errorf(codes.InvalidArgument, "license file %d is %d bytes; expected a .lic file of 1 byte to 1 MiB", i+1, n)
		}
	}
	resp, err := r.ReplaceMember(ctx, me.ID, req.GetOld(), req.GetWith(), req.GetLicenseFiles(), req.GetForce())
	s.served(ctx, me, "cluster_replace_member", map[string]string{"old": req.GetOld(), "with": req.GetWith(), "force": fmt.Sprint(req.GetForce())}, err)
	return resp, err
}

func replaceMemberCommand() *cli.Command {
	return &cli.Command{
		Name:      "replace-member",
		Usage:     "replace a dead member's machine by a new, unconfigured member, with a license binding the new set of computer IDs (full mode)",
		ArgsUsage: "OLD",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "with", Usage: "the new member's licensing address HOST:PORT (started with an empty data directory)"},
			&cli.StringSliceFlag{Name: "license", Usage: "license file binding the two survivors and the new member (repeatable); replaces the licenses bound to the old set"},
			&cli.BoolFlag{Name: "force", Usage: "replace OLD even though it still runs (stop it right after)"},
		},
		Action: func(c *cli.Context) error {
			a, err := replaceArgs(c)
			if err != nil {
				return err
			}
			var files [][]byte
			for _, p := range a.licenses {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				files = append(files, b)
			}
			r, err := adminCall(c, ModeFull, func(ctx context.Context, ac triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ClusterReplaceMemberResponse, error) {
				return ac.ClusterReplaceMember(ctx, &triadv1.ClusterReplaceMemberRequest{Header: h, Old: a.old, With: a.with, LicenseFiles: files, Force: a.force})
			})
			if err != nil {
				return err
			}
			if jsonOutput(c) {
				return printJSON(stdout(c), r)
			}
			fmt.Fprintf(stdout(c), "%s\nleader: %s\n", r.Message, r.Leader)
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			tableHeader(c, w, "NAME\tADDRESS\tCOMPUTER ID")
			for _, m := range r.Members {
				fmt.Fprintf(w, "%s\t%s\t%s\n", m.Name, m.Address, m.ComputerId)
			}
			var serials []string
			for _, l := range r.Licenses {
				serials = append(serials, l.Serial+" ("+l.State+")")
			}
			fmt.Fprintf(w, "\nlicenses\t%s\n", strings.Join(serials, ", "))
			return w.Flush()
		},
	}
}

type replaceArgsT struct {
	old, with string
	licenses  []string
	force     bool
}

// replaceArgs reads OLD and the flags, which may also follow OLD (as the
// documented `replace-member OLD --with HOST:PORT --license NEW.lic`;
// urfave/cli stops parsing flags at the first argument).
func replaceArgs(c *cli.Context) (replaceArgsT, error) {
	a := replaceArgsT{with: c.String("with"), licenses: c.StringSlice("license"), force: c.Bool("force")}
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		arg := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") {
			if a.old != "" {
				return a, fmt.Errorf("one member to replace, got %q and %q", a.old, arg)
			}
			a.old = arg
			continue
		}
		switch name {
		case "force":
			a.force = !hasVal || val == "true"
			continue
		case "with", "license":
		default:
			return a, fmt.Errorf("unknown flag %s: replace-member takes --with, --license and --force", arg)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return a, fmt.Errorf("flag %s needs a value", arg)
			}
			i++
			val = args[i]
		}
		if name == "with" {
			a.with = val
		} else {
			a.licenses = append(a.licenses, val)
		}
	}
	switch {
	case a.old == "":
		return a, fmt.Errorf("name the member to replace: triadctl cluster replace-member OLD --with HOST:PORT --license NEW.lic")
	case a.with == "":
		return a, fmt.Errorf("give --with HOST:PORT, the new member's licensing address")
	case len(a.licenses) == 0:
		return a, fmt.Errorf("give --license NEW.lic, a license binding the two survivors and the new member")
	}
	return a, nil
}
