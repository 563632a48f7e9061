package server

import (
	"context"
	"errors"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// EnrollLicense verifies a license file on this member (the trust keys are
// member configuration, so signature checks happen before the log) and
// replicates it; the FSM re-checks binding and dates deterministically.
func (s *Server) EnrollLicense(ctx context.Context, file []byte) (*triadv1.LicenseInfo, error) {
	c := s.cluster()
	if c == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not formed yet: run `triadctl cluster create` first")
	}
	f, err := license.Parse(file)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := f.Verify(s.trusted); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "%v", err)
	}
	var ids []string
	for _, m := range c.GetMembers() {
		ids = append(ids, m.GetComputerId())
	}
	if err := license.CheckBinding(&f.Body, c.GetMode(), ids); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	if err := license.CheckDates(&f.Body, s.now()); err != nil && !errors.Is(err, license.ErrNotYetValid) {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: licenseToFSM(f, file)}}}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, err
	}
	s.log.Info("license enrolled", "serial", f.Body.Serial, "customer", f.Body.IssuedTo)
	// Read your write: the answer (its state) comes from this member's FSM,
	// which may trail the leader that applied the enrollment.
	if err := s.waitApplied(ctx, res.GetLicense().GetEnrolledIndex()); err != nil {
		return nil, toStatus(err)
	}
	return s.licenseInfo(res.GetLicense()), nil
}

func licenseToFSM(f *license.File, raw []byte) *fsmpb.License {
	b := f.Body
	l := &fsmpb.License{
		Serial: b.Serial, Customer: b.IssuedTo, IssuedAtMs: b.IssuedAt.UnixMilli(),
		ValidAfterMs: b.ValidAfter.UnixMilli(), ValidUntilMs: b.ValidUntil.UnixMilli(),
		Supersedes: b.Supersedes, BindingMode: b.Binding.Mode, ComputerIds: b.Binding.ComputerIDs, Raw: raw,
	}
	for _, ft := range b.Features {
		l.Features = append(l.Features, &fsmpb.Feature{
			Name: ft.Name, Version: ft.Version, Count: ft.Count, GraceSeconds: ft.GraceSeconds,
			Model: ft.Model, Limit: ft.Limit, Overdraft: ft.Overdraft, UsageHours: ft.UsageHours,
			MaxBorrowSeconds: ft.MaxBorrowSeconds,
		})
	}
	return l
}

func (s *Server) licenseInfo(l *fsmpb.License) *triadv1.LicenseInfo {
	info := &triadv1.LicenseInfo{
		Serial: l.GetSerial(), Customer: l.GetCustomer(), IssuedAtUnixMs: l.GetIssuedAtMs(),
		ValidAfterUnixMs: l.GetValidAfterMs(), ValidUntilUnixMs: l.GetValidUntilMs(),
		Supersedes: l.GetSupersedes(), BindingMode: l.GetBindingMode(), ComputerIds: l.GetComputerIds(),
		State: s.fsm.LicenseState(l.GetSerial(), s.nowMs()), EnrolledUnixMs: l.GetEnrolledAtMs(),
	}
	for _, f := range l.GetFeatures() {
		info.Features = append(info.Features, &triadv1.Feature{Name: f.GetName(), Version: f.GetVersion(), Count: f.GetCount(), GraceSeconds: f.GetGraceSeconds()})
	}
	return info
}

// Licenses lists the enrolled licenses (admin.Backend).
func (s *Server) Licenses(ctx context.Context) []*triadv1.LicenseInfo {
	ls := s.fsm.Licenses()
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetSerial() < ls[j].GetSerial() })
	var out []*triadv1.LicenseInfo
	for _, l := range ls {
		out = append(out, s.licenseInfo(l))
	}
	return out
}

// ServerShow describes this member (admin.Backend).
func (s *Server) ServerShow(ctx context.Context) *triadv1.ServerShowResponse {
	info := s.info()
	return &triadv1.ServerShowResponse{
		Name: s.cfg.Name, ComputerId: s.computerID, Mode: s.mode(), Version: Version,
		Address: s.Addr(), RaftAddress: info.GetRaftAddress(), HttpAddress: s.HTTPAddr(), DataDir: s.cfg.DataDir,
	}
}
