package server

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// EnrollLicense checks a license file on this member, for clear answers
// before anything is proposed, and replicates it under the caller's
// session; every member's FSM verifies it again (signature against the
// replicated vendor trust, fields, binding, dates) when it applies.
func (s *Server) EnrollLicense(ctx context.Context, sessionID string, file []byte) (*triadv1.LicenseInfo, bool, error) {
	c := s.cluster()
	if c == nil {
		return nil, false, status.Error(codes.FailedPrecondition, "the cluster is not formed yet: run `triadctl cluster create` first")
	}
	f, err := license.Parse(file)
	if err != nil {
		return nil, false, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	trusted, _ := s.fsm.VendorTrust()
	if len(trusted) == 0 {
		return nil, false, status.Error(codes.FailedPrecondition, "the cluster trusts no vendor key, so no license can be verified: trust the vendor's public key with `triadctl vendor trust add VENDOR.pub`")
	}
	if err := f.Verify(trusted); err != nil {
		return nil, false, status.Errorf(codes.PermissionDenied, "%v", err)
	}
	var ids []string
	for _, m := range c.GetMembers() {
		ids = append(ids, m.GetComputerId())
	}
	if err := license.CheckBinding(&f.Body, c.GetMode(), ids); err != nil {
		return nil, false, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	if err := license.CheckDates(&f.Body, s.now()); err != nil && !errors.Is(err, license.ErrNotYetValid) {
		return nil, false, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	res, err := s.applyCommand(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{
		License: fsm.LicenseFromFile(f, file), SessionId: sessionID}}}, false)
	if err != nil {
		return nil, false, toStatus(err)
	}
	if err := resultStatus(res.GetCode(), res.GetMessage()); err != nil {
		return nil, false, err
	}
	// The state machine answers OK "... was already enrolled" for the same
	// license enrolled again (idempotent); the tool says so.
	already := res.GetLicense().GetEnrolledIndex() != 0 && strings.HasSuffix(res.GetMessage(), "was already enrolled")
	s.log.Info("license enrolled", "serial", f.Body.Serial, "customer", f.Body.IssuedTo, "already_enrolled", already)
	// Read your write: the answer (its state) comes from this member's FSM,
	// which may trail the leader that applied the enrollment.
	if err := s.waitApplied(ctx, res.GetLicense().GetEnrolledIndex()); err != nil {
		return nil, false, toStatus(err)
	}
	return s.licenseInfo(res.GetLicense()), already, nil
}

func (s *Server) licenseInfo(l *fsmpb.License) *triadv1.LicenseInfo {
	info := &triadv1.LicenseInfo{
		Serial: l.GetSerial(), Customer: l.GetCustomer(), IssuedAtUnixMs: l.GetIssuedAtMs(),
		ValidAfterUnixMs: l.GetValidAfterMs(), ValidUntilUnixMs: l.GetValidUntilMs(),
		Supersedes: l.GetSupersedes(), BindingMode: l.GetBindingMode(), ComputerIds: l.GetComputerIds(),
		State: s.fsm.LicenseState(l.GetSerial(), s.nowMs()), EnrolledUnixMs: l.GetEnrolledAtMs(),
	}
	for _, f := range l.GetFeatures() {
		info.Features = append(info.Features, &triadv1.Feature{Name: f.GetName(), Version: f.GetVersion(), Count: f.GetCount(), GraceSeconds: f.GetGraceSeconds(),
			VersionText: f.GetVersionText(), Components: f.GetComponents()})
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
		Notifications: s.notifySettings(), Pid: int64(os.Getpid()),
	}
}
