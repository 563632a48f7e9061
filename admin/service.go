package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/proto/triadv1"
)

// ProtocolVersion is the admin protocol spoken by this triadctl and served
// by this member. A triadctl older than the server is refused.
// 2: sessions (Connect, tokens, modes).
const ProtocolVersion = 2

// ToolVersion is the triadctl software version sent in every header
// (internal/buildinfo, as `triadctl version` prints it).
var ToolVersion = buildinfo.Get().Version

// Backend is what a member offers the admin service; package server
// implements it. Keeping the service here lets session and policy rules
// live next to the CLI that uses them. Every write takes the id of the
// session it is made under: the state machine refuses the write unless
// that session is live and full when it applies.
type Backend interface {
	TrustBackend
	ServerShow(ctx context.Context) *triadv1.ServerShowResponse
	// Discover is the session-less self-description a forming member reads.
	Discover(ctx context.Context) *triadv1.DiscoverResponse
	FormCluster(ctx context.Context, members []string, standalone bool) (*triadv1.ClusterCreateResponse, error)
	ClusterStatus(ctx context.Context) *triadv1.ClusterStatusResponse
	// EnrollLicense enrolls a license file; already is true when the same
	// license was enrolled before (nothing changed).
	EnrollLicense(ctx context.Context, sessionID string, file []byte) (info *triadv1.LicenseInfo, already bool, err error)
	Licenses(ctx context.Context) []*triadv1.LicenseInfo
	// UsageFeatures lists capacity and use per feature and version, with
	// each feature's model and countdown pool.
	UsageFeatures(ctx context.Context, consistent bool) ([]*triadv1.FeatureUsage, error)
	UsageLeases(ctx context.Context, consistent bool) ([]*triadv1.Lease, error)
	// UsageQueue lists the queued checkouts by feature, in queue order.
	UsageQueue(ctx context.Context, consistent bool) ([]*triadv1.QueuedCheckout, error)

	// RemoveLicense removes a license. requestID names the user action: a
	// retry with the same id gets the first answer.
	RemoveLicense(ctx context.Context, sessionID, serial, requestID string) (string, error)
	UsageUsers(ctx context.Context) []*triadv1.UserUsage
	Denials(ctx context.Context) *triadv1.UsageDenialsResponse
	// HistoryReport computes a usage-history report (kind usage,
	// utilization, users or compliance) as JSON, from the HTTP parameters
	// of /v1/history/<kind>.
	HistoryReport(ctx context.Context, kind string, params map[string]string) ([]byte, error)
	// ReleaseLease force-releases a lease; false when it was already gone.
	ReleaseLease(ctx context.Context, sessionID string, id uint64) (bool, error)
	// RecycleNamedUser unties an idle named user from a feature's seat.
	// requestID as for RemoveLicense.
	RecycleNamedUser(ctx context.Context, sessionID, user, feature, requestID string) (string, error)
	// SetRules replaces the access rules from a rules file's text.
	SetRules(ctx context.Context, sessionID, text string) (*triadv1.RulesShowResponse, error)
	Rules(ctx context.Context) *triadv1.RulesShowResponse

	// AuthState is what a connect is judged on.
	AuthState(ctx context.Context) AuthState
	// MemberName is the name of this member.
	MemberName() string
	// PeerMember names the other member whose address has this IP, if any.
	PeerMember(ip net.IP) (string, bool)
	// OpenSession records a session (replicated once the cluster is formed).
	OpenSession(ctx context.Context, s *Session, authVersion uint64) error
	// UseSession returns the live session id names, marking it used, or a
	// status error saying why it is not live.
	UseSession(ctx context.Context, id string) (*Session, error)
	CloseSession(ctx context.Context, id string) error
	Sessions(ctx context.Context) []*Session
	// Settings are the effective replicated settings.
	Settings(ctx context.Context) *triadv1.ServerSettings
	// SetPasswords stores new hashes (nil keeps one) for a full session.
	SetPasswords(ctx context.Context, sessionID string, fullHash, restrictedHash []byte, authVersion uint64) error
	SetSettings(ctx context.Context, sessionID string, req *triadv1.ServerSetRequest) (*triadv1.ServerSettings, error)
}

// AuthState is the replicated administration state a connect needs.
type AuthState struct {
	FullHash, RestrictedHash []byte
	Version                  uint64
	Policy                   string
	Activated                bool
	IdleTimeout              time.Duration
	// Stale: the member could not catch up with the leader; its state may
	// be behind.
	Stale bool
}

// Session is one administration session.
type Session struct {
	ID     string
	Mode   string
	Origin string
	Local  bool
	Member string
	// MemberOnly: known to this member only (not formed, or no leader).
	MemberOnly         bool
	OpenedMs, LastUsed int64
}

// Service implements the Admin gRPC service on top of a Backend.
type Service struct {
	triadv1.UnimplementedAdminServer
	b       Backend
	version string
	// throttle limits wrong passwords per source (throttle.go).
	throttle *Throttle
	// releases remembers the answers of selector releases by request id.
	releases answerMemo
}

// NewService returns the admin service of a member running version.
func NewService(b Backend, version string) *Service {
	return &Service{b: b, version: version, throttle: NewThrottle(DefaultThrottleBurst, DefaultThrottleEvery, nil)}
}

// maxLicenseFile bounds an enrolled file (a license is a few kilobytes).
const maxLicenseFile = 1 << 20

// maxPassword is bcrypt's input limit.
const maxPassword = 72

func (s *Service) checkVersion(h *triadv1.AdminHeader) error {
	if v := h.GetProtocolVersion(); v < ProtocolVersion {
		tool := h.GetToolVersion()
		if tool == "" {
			tool = "unknown version"
		}
		return status.Errorf(codes.FailedPrecondition, "triadctl %s speaks admin protocol %d, older than this server's (%d, server version %s): upgrade triadctl", tool, v, ProtocolVersion, s.version)
	}
	return nil
}

// TokenID is the id under which a session token is stored: its SHA-256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// auth checks the header and the session; op names the call for refusals.
// A write (needFull) in a restricted session is PERMISSION_DENIED.
func (s *Service) auth(ctx context.Context, h *triadv1.AdminHeader, op string, needFull bool) (*Session, error) {
	if err := s.checkVersion(h); err != nil {
		return nil, err
	}
	if h.GetSessionToken() == "" {
		return nil, status.Errorf(codes.Unauthenticated, "no session: connect first (triadctl connects for each command; a script can hold one with `triadctl connect`)")
	}
	sess, err := s.b.UseSession(ctx, TokenID(h.GetSessionToken()))
	if err != nil {
		return nil, err
	}
	if needFull && sess.Mode != ModeFull {
		return nil, status.Errorf(codes.PermissionDenied, "permission denied: %s needs full mode; this session is %s: connect with --mode full", op, sess.Mode)
	}
	return sess, nil
}

// origin describes the caller: local (Unix socket), another member, or a
// remote tool.
func (s *Service) origin(ctx context.Context) (desc string, local bool, peerMember bool) {
	me := s.b.MemberName()
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown tool via " + me, false, false
	}
	if p.Addr.Network() == "unix" {
		return "local tool on " + me + " (unix socket)", true, false
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		host = p.Addr.String()
	}
	if ip := net.ParseIP(host); ip != nil {
		if name, ok := s.b.PeerMember(ip); ok {
			return fmt.Sprintf("member %s's host (%s) via %s", name, p.Addr, me), false, true
		}
	}
	return fmt.Sprintf("remote tool %s via %s", p.Addr, me), false, false
}

func matches(hash []byte, password string) bool {
	return len(hash) > 0 && bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

func (s *Service) Connect(ctx context.Context, req *triadv1.ConnectRequest) (*triadv1.ConnectResponse, error) {
	if err := s.checkVersion(req.GetHeader()); err != nil {
		return nil, err
	}
	mode := req.GetMode()
	if mode == "" {
		mode = ModeFull
	}
	if mode != ModeFull && mode != ModeRestricted {
		return nil, status.Errorf(codes.InvalidArgument, "unknown mode %q: use full or restricted", mode)
	}
	desc, local, peerMember := s.origin(ctx)
	src := sourceOf(ctx)
	if msg, ok := s.throttled(ctx, "connect", mode, src, desc); ok {
		return nil, status.Error(codes.ResourceExhausted, msg)
	}
	st := s.b.AuthState(ctx)
	rule := Decide(ConnectInput{
		Mode: mode, Local: local, PeerMember: peerMember, Activated: st.Activated, Policy: st.Policy,
		FullSet: len(st.FullHash) > 0, RestrictedSet: len(st.RestrictedHash) > 0,
	})
	m := Match{Given: req.GetPassword() != ""}
	if m.Given && rule.Ask != AskNone {
		m.Full = matches(st.FullHash, req.GetPassword())
		m.Restricted = !m.Full && matches(st.RestrictedHash, req.GetPassword())
	}
	got, forced, out := Resolve(rule, mode, m)
	switch out {
	case Refused:
		msg := fmt.Sprintf("remote administration is denied by this cluster's policy (remote policy %q): use triadctl on a member (--local --data-dir DIR) or on one of the other members", st.Policy)
		s.authFailed(ctx, AuthFailure{Op: "connect", Mode: mode, Source: src, Origin: desc, Reason: ReasonPolicy, Message: msg})
		return nil, status.Error(codes.PermissionDenied, msg)
	case PasswordRequired:
		return nil, status.Errorf(codes.Unauthenticated, "password required: %s (give --password-file, TRIAD_PASSWORD, or answer the prompt)", rule.Ask)
	case WrongPassword:
		s.throttle.Fail(src)
		msg := fmt.Sprintf("wrong password (%s asked)", rule.Ask)
		s.authFailed(ctx, AuthFailure{Op: "connect", Mode: mode, Source: src, Origin: desc, Reason: ReasonWrongPassword, Message: msg})
		return nil, status.Error(codes.Unauthenticated, msg)
	}
	token, err := newToken()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "draw a session token: %v", err)
	}
	// Without a leader, a restricted session can only be member-only.
	sess := &Session{ID: TokenID(token), Mode: got, Origin: desc, Local: local, Member: s.b.MemberName(), MemberOnly: st.Stale && got == ModeRestricted}
	if err := s.b.OpenSession(ctx, sess, st.Version); err != nil {
		return nil, err
	}
	resp := &triadv1.ConnectResponse{
		SessionToken: token, Mode: got, ForcedRestricted: forced, Member: s.b.MemberName(), Origin: desc,
		Local: local, ServerProtocolVersion: ProtocolVersion, IdleTimeoutMs: st.IdleTimeout.Milliseconds(),
	}
	if forced {
		if rule.Table == PolicyRestricted {
			resp.Notice = "connection forced to restricted mode: the remote administration policy is restricted"
		} else {
			resp.Notice = "connection forced to restricted mode: the restricted password was given"
		}
	}
	return resp, nil
}

func (s *Service) Disconnect(ctx context.Context, req *triadv1.DisconnectRequest) (*triadv1.DisconnectResponse, error) {
	if err := s.checkVersion(req.GetHeader()); err != nil {
		return nil, err
	}
	if req.GetHeader().GetSessionToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "no session token given")
	}
	if err := s.b.CloseSession(ctx, TokenID(req.GetHeader().GetSessionToken())); err != nil {
		return nil, err
	}
	return &triadv1.DisconnectResponse{}, nil
}

// Discover answers without a session: name, mode and failover address,
// nothing secret (see docs/security.md).
func (s *Service) Discover(ctx context.Context, req *triadv1.DiscoverRequest) (*triadv1.DiscoverResponse, error) {
	return s.b.Discover(ctx), nil
}

func (s *Service) ServerShow(ctx context.Context, req *triadv1.ServerShowRequest) (*triadv1.ServerShowResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "server show", false)
	if err != nil {
		return nil, err
	}
	resp := proto.Clone(s.b.ServerShow(ctx)).(*triadv1.ServerShowResponse)
	resp.Settings = s.b.Settings(ctx)
	for _, ss := range s.b.Sessions(ctx) {
		resp.Sessions = append(resp.Sessions, &triadv1.AdminSession{
			Id: ss.ID[:min(12, len(ss.ID))], Mode: ss.Mode, Origin: ss.Origin, Local: ss.Local, Member: ss.Member,
			OpenedUnixMs: ss.OpenedMs, LastUsedUnixMs: ss.LastUsed, Yours: ss.ID == me.ID, MemberOnly: ss.MemberOnly,
		})
	}
	return resp, nil
}

func (s *Service) ServerSet(ctx context.Context, req *triadv1.ServerSetRequest) (*triadv1.ServerSettings, error) {
	me, err := s.auth(ctx, req.GetHeader(), "server set", true)
	if err != nil {
		return nil, err
	}
	if req.SessionIdleTimeoutMs == nil && req.IsolationMinutes == nil && req.Statistics == nil && req.AutoRecycling == nil && req.RemotePolicy == nil && req.ExpiryWarningDays == nil &&
		req.HistoryMinuteDays == nil && req.HistoryHourDays == nil {
		return nil, status.Error(codes.InvalidArgument, "no setting given: see `triadctl server set --help`")
	}
	return s.b.SetSettings(ctx, me.ID, req)
}

func (s *Service) PasswordSet(ctx context.Context, req *triadv1.PasswordSetRequest) (*triadv1.PasswordSetResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "password set", true)
	if err != nil {
		return nil, err
	}
	which := req.GetWhich()
	if which != ModeFull && which != ModeRestricted {
		return nil, status.Errorf(codes.InvalidArgument, "which password? %q: use full or restricted", which)
	}
	if n := len(req.GetNewPassword()); n == 0 || n > maxPassword {
		return nil, status.Errorf(codes.InvalidArgument, "the new password has %d bytes; use 1 to %d", n, maxPassword)
	}
	src := sourceOf(ctx)
	if msg, ok := s.throttled(ctx, "password set", which, src, me.Origin); ok {
		return nil, status.Error(codes.ResourceExhausted, msg)
	}
	st := s.b.AuthState(ctx)
	if len(st.FullHash) == 0 && which == ModeRestricted {
		return nil, status.Error(codes.FailedPrecondition, "the restricted password can only be set once the full password is set: set the full password first (triadctl password set full)")
	}
	if len(st.FullHash) > 0 && !matches(st.FullHash, req.GetCurrentFullPassword()) {
		s.throttle.Fail(src)
		msg := "the current full password is wrong: changing a password needs the current full password"
		s.authFailed(ctx, AuthFailure{Op: "password set", Mode: which, Source: src, Origin: me.Origin, Reason: ReasonWrongPassword, Message: msg})
		return nil, status.Error(codes.PermissionDenied, msg)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.GetNewPassword()), bcrypt.DefaultCost)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "hash the new password: %v", err)
	}
	var full, restricted []byte
	if which == ModeFull {
		full = hash
	} else {
		restricted = hash
	}
	if err := s.b.SetPasswords(ctx, me.ID, full, restricted, st.Version); err != nil {
		return nil, err
	}
	return &triadv1.PasswordSetResponse{Message: which + " password set"}, nil
}

func (s *Service) ClusterCreate(ctx context.Context, req *triadv1.ClusterCreateRequest) (*triadv1.ClusterCreateResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "cluster create", true)
	if err != nil {
		return nil, err
	}
	resp, err := s.b.FormCluster(ctx, req.GetMembers(), req.GetStandalone())
	s.served(ctx, me, "cluster_create", map[string]string{"members": strings.Join(req.GetMembers(), ","), "standalone": fmt.Sprint(req.GetStandalone())}, err)
	return resp, err
}

func (s *Service) ClusterStatus(ctx context.Context, req *triadv1.ClusterStatusRequest) (*triadv1.ClusterStatusResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "cluster status", false); err != nil {
		return nil, err
	}
	return s.b.ClusterStatus(ctx), nil
}

func (s *Service) LicenseEnroll(ctx context.Context, req *triadv1.LicenseEnrollRequest) (*triadv1.LicenseEnrollResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "license enroll", true)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetLicenseFile()); n == 0 || n > maxLicenseFile {
		return nil, status.Errorf(codes.InvalidArgument, "license file is %d bytes; expected a .lic file of 1 byte to 1 MiB", n)
	}
	l, already, err := s.b.EnrollLicense(ctx, me.ID, req.GetLicenseFile())
	if err != nil {
		return nil, err
	}
	return &triadv1.LicenseEnrollResponse{License: l, AlreadyEnrolled: already}, nil
}

func (s *Service) LicenseList(ctx context.Context, req *triadv1.LicenseListRequest) (*triadv1.LicenseListResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "license list", false); err != nil {
		return nil, err
	}
	return &triadv1.LicenseListResponse{Licenses: s.b.Licenses(ctx)}, nil
}

func (s *Service) LicenseShow(ctx context.Context, req *triadv1.LicenseShowRequest) (*triadv1.LicenseInfo, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "license show", false); err != nil {
		return nil, err
	}
	for _, l := range s.b.Licenses(ctx) {
		if l.GetSerial() == req.GetSerial() {
			return l, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no license %q is enrolled: see `triadctl license list`", req.GetSerial())
}

func (s *Service) LicenseRemove(ctx context.Context, req *triadv1.LicenseRemoveRequest) (*triadv1.LicenseRemoveResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "license remove", true)
	if err != nil {
		return nil, err
	}
	if req.GetSerial() == "" {
		return nil, status.Error(codes.InvalidArgument, "no serial given")
	}
	msg, err := s.b.RemoveLicense(ctx, me.ID, req.GetSerial(), requestID(req.GetRequestId()))
	if err != nil {
		return nil, err
	}
	return &triadv1.LicenseRemoveResponse{Message: msg}, nil
}

func (s *Service) UsageFeatures(ctx context.Context, req *triadv1.UsageFeaturesRequest) (*triadv1.FeaturesResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "usage features", false); err != nil {
		return nil, err
	}
	rows, err := s.b.UsageFeatures(ctx, req.GetConsistent())
	if err != nil {
		return nil, err
	}
	return &triadv1.FeaturesResponse{Features: rows}, nil
}

func (s *Service) UsageLeases(ctx context.Context, req *triadv1.UsageLeasesRequest) (*triadv1.UsageLeasesResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "usage leases", false); err != nil {
		return nil, err
	}
	ls, err := s.b.UsageLeases(ctx, req.GetConsistent())
	if err != nil {
		return nil, err
	}
	return &triadv1.UsageLeasesResponse{Leases: ls}, nil
}

func (s *Service) UsageQueue(ctx context.Context, req *triadv1.UsageQueueRequest) (*triadv1.UsageQueueResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "usage queue", false); err != nil {
		return nil, err
	}
	q, err := s.b.UsageQueue(ctx, req.GetConsistent())
	if err != nil {
		return nil, err
	}
	return &triadv1.UsageQueueResponse{Queued: q}, nil
}

func (s *Service) UsageUsers(ctx context.Context, req *triadv1.UsageUsersRequest) (*triadv1.UsageUsersResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "usage users", false); err != nil {
		return nil, err
	}
	return &triadv1.UsageUsersResponse{Users: s.b.UsageUsers(ctx)}, nil
}

func (s *Service) UsageDenials(ctx context.Context, req *triadv1.UsageDenialsRequest) (*triadv1.UsageDenialsResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "usage denials", false); err != nil {
		return nil, err
	}
	return s.b.Denials(ctx), nil
}

// HistoryReport answers a usage-history report (restricted mode is enough).
func (s *Service) HistoryReport(ctx context.Context, req *triadv1.HistoryReportRequest) (*triadv1.HistoryReportResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "report "+req.GetKind(), false); err != nil {
		return nil, err
	}
	b, err := s.b.HistoryReport(ctx, req.GetKind(), req.GetParams())
	if err != nil {
		return nil, err
	}
	return &triadv1.HistoryReportResponse{Json: string(b)}, nil
}

// UsageRelease force-releases one lease by id, or, as lmremove does, every
// live lease matching a selector (user, host and/or feature, all given ones
// must match). An empty selector is refused: releasing every lease is never
// what a typo should do. A lease id that was never granted is NOT_FOUND; one
// that already ended answers released=false.
func (s *Service) UsageRelease(ctx context.Context, req *triadv1.UsageReleaseRequest) (*triadv1.UsageReleaseResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "usage release", true)
	if err != nil {
		return nil, err
	}
	selector := req.GetUser() != "" || req.GetHost() != "" || req.GetFeature() != ""
	switch {
	case req.GetLeaseId() != 0 && selector:
		return nil, status.Error(codes.InvalidArgument, "give a lease id or a selector (--user/--host/--feature), not both")
	case req.GetLeaseId() == 0 && !selector:
		return nil, status.Error(codes.InvalidArgument, "no lease id and an empty selector: give a lease id (see `triadctl usage leases`) or --user, --host and/or --feature")
	}
	if selector {
		return s.releaseMatching(ctx, me, req)
	}
	var before *triadv1.Lease
	if ls, err := s.b.UsageLeases(ctx, false); err == nil {
		for _, l := range ls {
			if l.GetLeaseId() == req.GetLeaseId() {
				before = l
			}
		}
	}
	ok, err := s.b.ReleaseLease(ctx, me.ID, req.GetLeaseId())
	s.served(ctx, me, "force_release", map[string]string{"lease_id": fmt.Sprint(req.GetLeaseId()), "released": fmt.Sprint(ok)}, err)
	if err != nil {
		return nil, err
	}
	resp := &triadv1.UsageReleaseResponse{LeaseId: req.GetLeaseId(), Released: ok}
	if ok && before != nil {
		resp.Leases = []*triadv1.Lease{before}
	}
	return resp, nil
}

// releaseMatching releases every live lease the selector matches, read
// through the leader. A retry with the same request id on this member gets
// the first answer (the leases it released), not "none match".
func (s *Service) releaseMatching(ctx context.Context, me *Session, req *triadv1.UsageReleaseRequest) (*triadv1.UsageReleaseResponse, error) {
	id := req.GetRequestId()
	if id != "" {
		if r, ok := s.releases.get(id); ok {
			return r, nil
		}
	}
	ls, err := s.b.UsageLeases(ctx, true)
	if err != nil {
		return nil, err
	}
	resp := &triadv1.UsageReleaseResponse{}
	var ids []string
	for _, l := range ls {
		if req.GetUser() != "" && l.GetUser() != req.GetUser() || req.GetHost() != "" && l.GetHost() != req.GetHost() ||
			req.GetFeature() != "" && l.GetFeature() != req.GetFeature() {
			continue
		}
		ok, err := s.b.ReleaseLease(ctx, me.ID, l.GetLeaseId())
		if err != nil {
			s.served(ctx, me, "force_release", map[string]string{"user": req.GetUser(), "host": req.GetHost(), "feature": req.GetFeature(), "lease_ids": strings.Join(ids, ",")}, err)
			return nil, err
		}
		if ok {
			resp.Leases = append(resp.Leases, l)
			ids = append(ids, fmt.Sprint(l.GetLeaseId()))
		}
	}
	resp.Released = len(resp.Leases) > 0
	s.served(ctx, me, "force_release", map[string]string{"user": req.GetUser(), "host": req.GetHost(), "feature": req.GetFeature(), "lease_ids": strings.Join(ids, ",")}, nil)
	if id != "" {
		s.releases.put(id, resp)
	}
	return resp, nil
}

func (s *Service) UsageRecycle(ctx context.Context, req *triadv1.UsageRecycleRequest) (*triadv1.UsageRecycleResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "usage recycle", true)
	if err != nil {
		return nil, err
	}
	if req.GetUser() == "" || req.GetFeature() == "" {
		return nil, status.Error(codes.InvalidArgument, "give the user and the feature: triadctl usage recycle USER FEATURE")
	}
	msg, err := s.b.RecycleNamedUser(ctx, me.ID, req.GetUser(), req.GetFeature(), requestID(req.GetRequestId()))
	if err != nil {
		return nil, err
	}
	return &triadv1.UsageRecycleResponse{Message: msg}, nil
}

// maxRulesText bounds a rules file (the parser refuses more than 1 MiB too).
const maxRulesText = 1 << 20

func (s *Service) RulesSet(ctx context.Context, req *triadv1.RulesSetRequest) (*triadv1.RulesShowResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "rules set", true)
	if err != nil {
		return nil, err
	}
	if len(req.GetText()) > maxRulesText {
		return nil, status.Errorf(codes.InvalidArgument, "rules file is %d bytes; at most %d", len(req.GetText()), maxRulesText)
	}
	return s.b.SetRules(ctx, me.ID, req.GetText())
}

func (s *Service) RulesShow(ctx context.Context, req *triadv1.RulesShowRequest) (*triadv1.RulesShowResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "rules show", false); err != nil {
		return nil, err
	}
	return s.b.Rules(ctx), nil
}

// requestID is the request id of an idempotent admin write: the caller's
// (triadctl chooses one per user action and keeps it across members), or
// a new one for callers that send none, which still makes this member's
// own retries (forwarding to a new leader) idempotent.
func requestID(given string) string {
	if given != "" {
		return given
	}
	return rand.Text()
}
