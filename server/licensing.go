package server

import (
	"cmp"
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/featver"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// LicensingProtocolVersion is the leasing protocol this member speaks.
// 2: lease secrets and client ids are required (docs/security.md); a
// version-1 client would renew without secrets and churn through seats,
// so it is refused outright.
const LicensingProtocolVersion = 2

// Input limits: a malformed request gets INVALID_ARGUMENT, never a crash.
const (
	maxIDLen      = 128
	maxNameLen    = 256
	maxCount      = 100000
	maxLeaseIDs   = 10000
	maxTTLSeconds = 3600
	minTTLSeconds = 1
)

type licensingService struct {
	triadv1.UnimplementedLicensingServer
	s *Server
	m *metrics // nil records nothing
}

func checkProtocol(v uint32) error {
	if v != LicensingProtocolVersion {
		return status.Errorf(codes.FailedPrecondition, "license protocol version is invalid: client %d, server %d", v, LicensingProtocolVersion)
	}
	return nil
}

func (l *licensingService) Checkout(ctx context.Context, req *triadv1.CheckoutRequest) (*triadv1.CheckoutResponse, error) {
	defer l.m.observe(methodCheckout, time.Now())
	op, err := l.checkoutOp(req)
	if err != nil {
		return nil, err
	}
	return l.take(ctx, req, op)
}

// checkoutOp checks a checkout request and turns it into its Grant op.
func (l *licensingService) checkoutOp(req *triadv1.CheckoutRequest) (*fsmpb.Op, error) {
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	if err := validateCheckout(req); err != nil {
		return nil, err
	}
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = l.s.cfg.LeaseTTL
	}
	g := l.grantFor(req)
	g.TtlMs = ttl.Milliseconds()
	if req.GetQueue() {
		g.QueueWaitMs = queueWait(req.GetQueueWaitSeconds()).Milliseconds()
	}
	return &fsmpb.Op{Op: &fsmpb.Op_Grant{Grant: g}}, nil
}

// grantFor turns a checkout request into the FSM's Grant.
func (l *licensingService) grantFor(req *triadv1.CheckoutRequest) *fsmpb.Grant {
	return &fsmpb.Grant{
		RequestId: req.GetRequestId(), Feature: req.GetFeature(), Version: req.GetVersion(), VersionText: req.GetVersionText(),
		Count: max(req.GetCount(), 1), User: req.GetUser(), Host: req.GetHost(), Pid: req.GetPid(),
		ClientId: req.GetClientId(), ViaMember: l.s.cfg.Name,
	}
}

// take runs a grant or borrow op and answers with the lease or the denial,
// which is logged and counted with its reason.
func (l *licensingService) take(ctx context.Context, req *triadv1.CheckoutRequest, op *fsmpb.Op) (*triadv1.CheckoutResponse, error) {
	res, err := l.s.submitOps(ctx, []*fsmpb.Op{op}, false)
	if err != nil {
		l.m.checkoutError()
		return nil, toStatus(err)
	}
	return l.took(req, res[0])
}

// took answers a checkout or borrow from its op's result.
func (l *licensingService) took(req *triadv1.CheckoutRequest, r *fsmpb.OpResult) (*triadv1.CheckoutResponse, error) {
	if r.GetCode() == fsmpb.Code_QUEUED {
		// Waiting, not refused: neither a checkout nor a denial yet.
		leader, _ := l.s.leaderAddr()
		return &triadv1.CheckoutResponse{Leader: leader, Queued: true, QueuePosition: r.GetQueuePosition(),
			QueueLength: r.GetQueueLength(), QueueDeadlineUnixMs: r.GetQueueDeadlineMs()}, nil
	}
	l.m.checkout(req.GetFeature(), r.GetCode())
	if err := l.neverFits(req, r); err != nil {
		l.s.log.Info("checkout denied", "feature", req.GetFeature(), "version", featver.Display(req.GetVersion(), req.GetVersionText()),
			"count", req.GetCount(), "user", req.GetUser(), "host", req.GetHost(), "reason", "can never fit", "message", status.Convert(err).Message())
		return nil, err
	}
	if err := resultStatus(r.GetCode(), r.GetMessage()); err != nil {
		reason := denialReason(r.GetCode(), r.GetMessage())
		l.s.log.Info("checkout denied", "feature", req.GetFeature(), "version", featver.Display(req.GetVersion(), req.GetVersionText()),
			"count", req.GetCount(), "user", req.GetUser(), "host", req.GetHost(), "reason", reason, "message", r.GetMessage())
		return nil, err
	}
	leader, _ := l.s.leaderAddr()
	// The secret goes to the caller only, beside the lease (never inside a
	// Lease message, which listings also use).
	return &triadv1.CheckoutResponse{Lease: l.s.leaseToAPI(r.GetLease()), Leader: leader, LeaseSecret: r.GetLease().GetSecret()}, nil
}

// neverFits turns the state machine's "can never fit" refusal (more seats
// than the feature has in all at its version or above, overdraft
// included; decided in Apply at leader time, fsm.NeverFitsPrefix) into a
// definite FAILED_PRECONDITION: waiting or retrying cannot help, so it must
// not look like a retryable no-seat (RESOURCE_EXHAUSTED) to clients and
// queues. A retry of the request id gets the remembered refusal, hence
// the same answer.
func (l *licensingService) neverFits(req *triadv1.CheckoutRequest, r *fsmpb.OpResult) error {
	if r.GetCode() != fsmpb.Code_NO_SEAT || !strings.HasPrefix(r.GetMessage(), fsm.NeverFitsPrefix) {
		return nil
	}
	return status.Error(codes.FailedPrecondition, r.GetMessage())
}

// maxBorrowSeconds bounds a borrow request (the license sets the real limit).
const maxBorrowSeconds = 366 * 24 * 3600

func (l *licensingService) Borrow(ctx context.Context, req *triadv1.BorrowRequest) (*triadv1.CheckoutResponse, error) {
	defer l.m.observe(methodCheckout, time.Now())
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	if d := req.GetDurationSeconds(); d == 0 || d > maxBorrowSeconds {
		return nil, status.Errorf(codes.InvalidArgument, "duration_seconds %d is out of range (1 to %d; the license sets the real limit)", d, maxBorrowSeconds)
	}
	b := &fsmpb.Borrow{DurationMs: int64(req.GetDurationSeconds()) * 1000, LeaseId: req.GetLeaseId(), Secret: req.GetLeaseSecret()}
	co := req.GetCheckout()
	if b.LeaseId == 0 {
		if co == nil {
			return nil, status.Error(codes.InvalidArgument, "a new borrow needs checkout (feature, request_id...)")
		}
		co.ProtocolVersion = req.GetProtocolVersion()
		if err := validateCheckout(co); err != nil {
			return nil, err
		}
		b.Grant = l.grantFor(co)
	}
	return l.take(ctx, co, &fsmpb.Op{Op: &fsmpb.Op_Borrow{Borrow: b}})
}

// ReturnBorrow returns borrowed leases early: a release (secrets needed).
func (l *licensingService) ReturnBorrow(ctx context.Context, req *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	return l.Release(ctx, req)
}

// denialReason is the short reason a denial is logged and counted under.
func denialReason(code fsmpb.Code, msg string) string {
	return fsm.DenialDetail(code, msg)
}

func validateCheckout(req *triadv1.CheckoutRequest) error {
	switch {
	case req.GetRequestId() == "" || len(req.GetRequestId()) > maxIDLen:
		return status.Errorf(codes.InvalidArgument, "request_id must be 1 to %d characters: the client library sets a unique one per checkout", maxIDLen)
	case req.GetFeature() == "" || len(req.GetFeature()) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "feature name must be 1 to %d characters", maxNameLen)
	case req.GetCount() > maxCount:
		return status.Errorf(codes.InvalidArgument, "count %d is too large (at most %d seats per checkout)", req.GetCount(), maxCount)
	case req.GetTtlSeconds() != 0 && (req.GetTtlSeconds() < minTTLSeconds || req.GetTtlSeconds() > maxTTLSeconds):
		return status.Errorf(codes.InvalidArgument, "ttl_seconds %d is out of range (%d to %d, or 0 for the default)", req.GetTtlSeconds(), minTTLSeconds, maxTTLSeconds)
	case len(req.GetUser()) > maxNameLen || len(req.GetHost()) > maxNameLen:
		return status.Errorf(codes.InvalidArgument, "user or host is too long (at most %d characters)", maxNameLen)
	case req.GetClientId() == "" || len(req.GetClientId()) > maxIDLen:
		return status.Errorf(codes.InvalidArgument, "client_id must be 1 to %d characters: the client library sets a random one per process, and request ids are scoped by it", maxIDLen)
	case req.GetQueueWaitSeconds() > maxQueueWaitSeconds:
		return status.Errorf(codes.InvalidArgument, "queue_wait_seconds %d is too long (at most %d, 7 days)", req.GetQueueWaitSeconds(), maxQueueWaitSeconds)
	case req.GetQueueWaitSeconds() != 0 && !req.GetQueue():
		return status.Error(codes.InvalidArgument, "queue_wait_seconds is set without queue: set queue to wait for a seat")
	}
	return normalizeVersion(req)
}

// normalizeVersion checks a request's version_text and puts the pair in
// its one form: a dotted text with its first component in version, a
// whole number in version alone. A text given without version (raw API
// callers) fills version in.
func normalizeVersion(req *triadv1.CheckoutRequest) error {
	text := req.GetVersionText()
	if text == "" {
		return nil
	}
	v, norm, err := featver.Split(text)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "version_text: %v", err)
	}
	if req.GetVersion() != 0 && req.GetVersion() != v {
		return status.Errorf(codes.InvalidArgument, "version_text %q does not start with version %d: give the dotted version in version_text and its first component (or 0) in version", text, req.GetVersion())
	}
	req.Version, req.VersionText = v, norm
	return nil
}

func checkLeaseIDs(ids []uint64) error {
	if len(ids) == 0 {
		return status.Error(codes.InvalidArgument, "no lease ids given")
	}
	if len(ids) > maxLeaseIDs {
		return status.Errorf(codes.InvalidArgument, "%d lease ids in one call; at most %d", len(ids), maxLeaseIDs)
	}
	return nil
}

func (l *licensingService) Renew(ctx context.Context, req *triadv1.RenewRequest) (*triadv1.RenewResponse, error) {
	defer l.m.observe(methodRenew, time.Now())
	op, err := l.renewOp(req)
	if err != nil {
		return nil, err
	}
	l.m.renewIDs(len(req.GetLeaseIds()))
	res, err := l.s.submitOps(ctx, []*fsmpb.Op{op}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	return l.renewed(res[0]), nil
}

// renewOp checks a renew request and turns it into its Renew op.
func (l *licensingService) renewOp(req *triadv1.RenewRequest) (*fsmpb.Op, error) {
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	if err := checkLeaseRefs(req.GetLeaseIds(), req.GetLeaseSecrets()); err != nil {
		return nil, err
	}
	idle, err := l.s.idleReports(req.GetLeaseIds(), req.GetIdleMs())
	if err != nil {
		return nil, err
	}
	return &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: req.GetLeaseIds(), Secrets: req.GetLeaseSecrets(), IdleMs: idle}}}, nil
}

// renewed answers a renewal from its op's result.
func (l *licensingService) renewed(r *fsmpb.OpResult) *triadv1.RenewResponse {
	resp := &triadv1.RenewResponse{}
	resp.Leader, _ = l.s.leaderAddr()
	for _, lr := range r.GetLeases() {
		rr := &triadv1.RenewResult{LeaseId: lr.GetLeaseId(), Ok: lr.GetCode() == fsmpb.Code_OK}
		if rr.Ok {
			rr.ExpiresUnixMs = lr.GetExpiresMs()
			rr.TtlSeconds = uint32(lr.GetTtlMs() / 1000)
		} else {
			rr.Error = lr.GetMessage()
			rr.IdleTimeout = lr.GetIdleTimeout()
		}
		resp.Results = append(resp.Results, rr)
	}
	return resp
}

func (l *licensingService) Release(ctx context.Context, req *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	defer l.m.observe(methodRelease, time.Now())
	op, err := releaseOp(req)
	if err != nil {
		return nil, err
	}
	res, err := l.s.submitOps(ctx, []*fsmpb.Op{op}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	return released(res[0]), nil
}

// releaseOp checks a release request and turns it into its Release op.
func releaseOp(req *triadv1.ReleaseRequest) (*fsmpb.Op, error) {
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	if err := checkLeaseRefs(req.GetLeaseIds(), req.GetLeaseSecrets()); err != nil {
		return nil, err
	}
	return &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: req.GetLeaseIds(), Secrets: req.GetLeaseSecrets()}}}, nil
}

// released answers a release from its op's result.
func released(r *fsmpb.OpResult) *triadv1.ReleaseResponse {
	resp := &triadv1.ReleaseResponse{}
	for _, lr := range r.GetLeases() {
		rr := &triadv1.ReleaseResult{LeaseId: lr.GetLeaseId(), Released: lr.GetCode() == fsmpb.Code_OK}
		if !rr.Released {
			rr.Error = lr.GetMessage()
		}
		resp.Results = append(resp.Results, rr)
	}
	return resp
}

func (l *licensingService) Features(ctx context.Context, req *triadv1.FeaturesRequest) (*triadv1.FeaturesResponse, error) {
	defer l.m.observe(methodFeatures, time.Now())
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	rows, err := l.s.UsageFeatures(ctx, req.GetConsistent())
	if err != nil {
		return nil, err
	}
	return &triadv1.FeaturesResponse{Features: rows}, nil
}

// readIndex waits until this member has applied everything the leader had
// committed when asked (linearizable reads on any member).
func (s *Server) readIndex(ctx context.Context) error {
	var index uint64
	err := s.route(ctx, false, func(context.Context) (err error) {
		index, err = s.leaderReadIndex()
		return err
	}, func(ctx context.Context) error {
		addr := s.leaderPeerAddr()
		info, err := s.peerClient(addr).Info(ctx, &peerpb.InfoRequest{ReadIndex: true})
		if err != nil {
			return forwardError(addr, err)
		}
		index = info.GetCommitIndex()
		return nil
	})
	if err != nil {
		return err
	}
	return s.waitApplied(ctx, index)
}

// leaderReadIndex is the leader's answer to a consistent read: its commit
// index, once it has committed an entry of its term (the barrier in
// leaderLoop) and confirmed it still leads. Until then the commit index
// may be older than what the previous leader acknowledged: the read is
// refused with a retryable ErrNotReadyForReads (Unavailable at the edge).
func (s *Server) leaderReadIndex() (uint64, error) {
	if !s.consistentReady.Load() {
		return 0, ErrNotReadyForReads
	}
	if err := s.node.raft.VerifyLeader().Error(); err != nil {
		return 0, err
	}
	return s.node.raft.CommitIndex(), nil
}

// waitApplied waits until this member's FSM has applied index.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	for s.fsm.AppliedIndex() < index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func (s *Server) leaseToAPI(l *fsmpb.Lease) *triadv1.Lease {
	out := &triadv1.Lease{
		LeaseId: l.GetId(), RequestId: l.GetRequestId(), Feature: l.GetFeature(), Version: l.GetVersion(), VersionText: l.GetVersionText(),
		Count: l.GetCount(), User: l.GetUser(), Host: l.GetHost(), Pid: l.GetPid(), ClientId: l.GetClientId(),
		GrantedUnixMs: l.GetGrantedMs(), RenewedUnixMs: l.GetRenewedMs(), ExpiresUnixMs: l.GetExpiresMs(),
		TtlSeconds: uint32(l.GetTtlMs() / 1000), FencingIndex: l.GetGrantedIndex(), ViaMember: l.GetViaMember(),
		Borrowed:        l.GetBorrowed(),
		GraceSeconds:    s.fsm.GraceSeconds(cmp.Or(l.GetPackage(), l.GetFeature()), s.nowMs()),
		Package:         l.GetPackage(),
		Components:      s.leaseComponents(l),
		Lingering:       l.GetLingering(),
		IdleSinceUnixMs: l.GetIdleSinceMs(),
	}
	if l.GetLingering() {
		out.LingerUntilUnixMs = l.GetExpiresMs()
	}
	return out
}

// Leases lists every live lease (admin.Backend). A listing shows no
// secret (the FSM's reads hold none, and triadv1.Lease has no field for
// one) and no request id: a request id with its client id resolves a
// retried checkout to the lease and its secret, so only the process that
// chose it may know it.
func (s *Server) Leases(ctx context.Context) []*triadv1.Lease {
	var out []*triadv1.Lease
	seats := s.fsm.LicensedVersions(s.nowMs())
	for _, l := range s.fsm.Leases() {
		a := s.leaseToAPI(l)
		a.RequestId = ""
		lv := seats[l.GetId()]
		a.LicensedVersion, a.LicensedVersionText = lv.Version, lv.Text
		out = append(out, a)
	}
	return out
}

// leaseComponents lists, for a package checkout, the component features
// the lease grants.
func (s *Server) leaseComponents(l *fsmpb.Lease) []string {
	if l.GetPackage() == "" || l.GetPackage() != l.GetFeature() {
		return nil
	}
	return s.fsm.PackageComponents(l.GetPackage())
}
