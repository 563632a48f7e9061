package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/audit"
)

// AuditVerifier is implemented by a Backend that keeps an audit log
// (package server does).
type AuditVerifier interface {
	// VerifyAudit checks the member's audit log, including that nothing was
	// cut off the end of what this process wrote.
	VerifyAudit(ctx context.Context) (*triadv1.AuditVerifyResponse, error)
}

// ActionObserver is implemented by a Backend that audits administration
// actions the Raft log does not tell apart from client traffic.
type ActionObserver interface {
	AdminServed(ctx context.Context, who *Session, op string, args map[string]string, err error)
}

func (s *Service) served(ctx context.Context, who *Session, op string, args map[string]string, err error) {
	if o, ok := s.b.(ActionObserver); ok {
		o.AdminServed(ctx, who, op, args, err)
	}
}

// AuditVerify checks this member's audit log (full mode: the answer names
// files on the member).
func (s *Service) AuditVerify(ctx context.Context, req *triadv1.AuditVerifyRequest) (*triadv1.AuditVerifyResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "server verify-audit", true); err != nil {
		return nil, err
	}
	v, ok := s.b.(AuditVerifier)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this member keeps no audit log")
	}
	return v.VerifyAudit(ctx)
}

// ReportResponse turns a verification report into the API's answer.
func ReportResponse(rep *audit.Report) *triadv1.AuditVerifyResponse {
	out := &triadv1.AuditVerifyResponse{Records: rep.Records, LastSeq: rep.LastSeq, LastHash: rep.LastHash, Ok: rep.Broken == nil}
	for _, f := range rep.Files {
		out.Files = append(out.Files, filepath.Base(f))
	}
	if b := rep.Broken; b != nil {
		out.BrokenFile, out.BrokenSeq, out.BrokenLine, out.Problem = filepath.Base(b.File), b.Seq, b.Line, b.Problem
	}
	return out
}

func verifyAuditCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify-audit",
		Usage:     "check the member's hash-chained audit log (full mode), or audit files given with --file, offline; names the first broken record",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "verify these audit files (or a directory of them) here, oldest first, without contacting a member"},
		},
		Action: func(c *cli.Context) error {
			var r *triadv1.AuditVerifyResponse
			if files := c.StringSlice("file"); len(files) > 0 {
				rep, err := VerifyAuditFiles(files)
				if err != nil {
					return err
				}
				r = ReportResponse(rep)
			} else {
				var err error
				r, err = adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.AuditVerifyResponse, error) {
					return a.AuditVerify(ctx, &triadv1.AuditVerifyRequest{Header: h})
				})
				if err != nil {
					return err
				}
			}
			if jsonOutput(c) {
				if err := printJSON(stdout(c), r); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				if r.Member != "" {
					fmt.Fprintf(w, "member\t%s\ndirectory\t%s\n", r.Member, r.Dir)
				}
				fmt.Fprintf(w, "files\t%d\nrecords\t%d\n", len(r.Files), r.Records)
				if r.Ok {
					fmt.Fprintf(w, "last record\tseq %d, hash %s\nchain\tintact\n", r.LastSeq, r.LastHash)
				} else {
					fmt.Fprintf(w, "chain\tBROKEN\n")
				}
				w.Flush()
			}
			if !r.Ok {
				where := r.BrokenFile
				if r.BrokenLine > 0 {
					where += fmt.Sprintf(" line %d", r.BrokenLine)
				}
				if r.BrokenSeq > 0 {
					where += fmt.Sprintf(" (seq %d)", r.BrokenSeq)
				}
				return fmt.Errorf("audit log broken at %s: %s (intact up to seq %d)", where, r.Problem, r.LastSeq)
			}
			return nil
		},
	}
}

// VerifyAuditFiles verifies a directory (all its audit files) or files in
// the order given.
func VerifyAuditFiles(paths []string) (*audit.Report, error) {
	if len(paths) == 1 {
		if fi, err := os.Stat(paths[0]); err == nil && fi.IsDir() {
			return audit.VerifyDir(paths[0])
		}
	}
	return audit.Verify(paths)
}
