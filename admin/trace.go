package admin

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// Usage tracing (docs/admin.md, "Usage tracing"): `triadctl trace on
// --feature F | --license SERIAL`, `trace off [...]`, `trace show`.

// TraceBackend is what the trace commands need from a member. It is kept
// apart from Backend so that backends without tracing (tests) need not
// implement it: the service answers Unimplemented for them.
type TraceBackend interface {
	SetTrace(ctx context.Context, sessionID string, req *triadv1.TraceSetRequest) (*triadv1.TraceShowResponse, error)
	Trace(ctx context.Context) *triadv1.TraceShowResponse
}

// maxTraceName bounds a feature name or serial given to trace (the state
// machine refuses longer ones too).
const maxTraceName = 256

func (s *Service) traceBackend() (TraceBackend, error) {
	tb, ok := s.b.(TraceBackend)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this member does not support usage tracing")
	}
	return tb, nil
}

// TraceSet switches tracing on or off (full mode).
func (s *Service) TraceSet(ctx context.Context, req *triadv1.TraceSetRequest) (*triadv1.TraceShowResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "trace", true)
	if err != nil {
		return nil, err
	}
	tb, err := s.traceBackend()
	if err != nil {
		return nil, err
	}
	if err := checkTraceRequest(req); err != nil {
		return nil, err
	}
	return tb.SetTrace(ctx, me.ID, req)
}

func checkTraceRequest(req *triadv1.TraceSetRequest) error {
	f, serial := req.GetFeature(), req.GetSerial()
	switch {
	case req.GetAllOff() && (req.GetOn() || f != "" || serial != ""):
		return status.Error(codes.InvalidArgument, "all_off switches every trace off: give no feature, license or on with it")
	case req.GetAllOff():
		return nil
	case (f == "") == (serial == ""):
		return status.Error(codes.InvalidArgument, "give exactly one of --feature F and --license SERIAL")
	case len(f) > maxTraceName || len(serial) > maxTraceName:
		return status.Errorf(codes.InvalidArgument, "feature name or license serial is too long (at most %d characters)", maxTraceName)
	}
	return nil
}

// TraceShow lists what is traced (restricted mode is enough).
func (s *Service) TraceShow(ctx context.Context, req *triadv1.TraceShowRequest) (*triadv1.TraceShowResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "trace show", false); err != nil {
		return nil, err
	}
	tb, err := s.traceBackend()
	if err != nil {
		return nil, err
	}
	return tb.Trace(ctx), nil
}

func traceCommand() *cli.Command {
	target := []cli.Flag{
		&cli.StringFlag{Name: "feature", Usage: "trace this feature (any version)"},
		&cli.StringFlag{Name: "license", Usage: "trace the features this license `SERIAL` grants"},
	}
	set := func(on bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q: use --feature F or --license SERIAL", c.Args().First())
			}
			req := &triadv1.TraceSetRequest{On: on, Feature: c.String("feature"), Serial: c.String("license")}
			switch {
			case !on && req.Feature == "" && req.Serial == "":
				req.AllOff = true
			case req.Feature != "" && req.Serial != "":
				return fmt.Errorf("give --feature or --license, not both")
			case req.Feature == "" && req.Serial == "":
				return fmt.Errorf("say what to trace: triadctl trace on --feature F, or --license SERIAL")
			}
			return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.TraceShowResponse, error) {
				req.Header = h
				return a.TraceSet(ctx, req)
			}, func(r *triadv1.TraceShowResponse) {
				fmt.Fprintln(stdout(c), r.Message)
				printTrace(c, r)
			})
		}
	}
	return &cli.Command{
		Name:  "trace",
		Usage: "usage tracing: log every checkout, release, denial and expiry of a feature or license on every member",
		Subcommands: []*cli.Command{
			{
				Name:   "on",
				Usage:  "start tracing a feature or a license (full mode)",
				Flags:  target,
				Action: set(true),
			},
			{
				Name:   "off",
				Usage:  "stop tracing a feature or a license, or everything when none is given (full mode)",
				Flags:  target,
				Action: set(false),
			},
			{
				Name:  "show",
				Usage: "list what is traced",
				Action: func(c *cli.Context) error {
					return show(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.TraceShowResponse, error) {
						return a.TraceShow(ctx, &triadv1.TraceShowRequest{Header: h})
					}, func(r *triadv1.TraceShowResponse) { printTrace(c, r) })
				},
			},
		},
	}
}

func printTrace(c *cli.Context, r *triadv1.TraceShowResponse) {
	if len(r.Features)+len(r.Serials) == 0 {
		fmt.Fprintln(stdout(c), "nothing is traced")
		return
	}
	if len(r.Features) > 0 {
		fmt.Fprintf(stdout(c), "traced features: %s\n", strings.Join(r.Features, ", "))
	}
	if len(r.Serials) > 0 {
		fmt.Fprintf(stdout(c), "traced licenses: %s\n", strings.Join(r.Serials, ", "))
	}
}
