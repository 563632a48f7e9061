package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// fakeBackend answers with fixed values and records what it was asked.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string

	members    []string
	standalone bool
	// status, when set, is what ClusterStatus answers (else fakeStatus).
	status     *triadv1.ClusterStatusResponse
	consistent bool
	// leasesConsistent: what UsageLeases was asked.
	leasesConsistent bool
	enrolled         []byte
	enrollErr        error
	auth             AuthState
	sessions         map[string]*Session
	// writeSession: the session id each write was made under, by backend method.
	writeSession map[string]string
	// requestIDs: the request ids of idempotent writes, in order.
	requestIDs []string
}

// wrote records a write and the session it carries.
func (f *fakeBackend) wrote(name, sessionID string) {
	f.called(name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writeSession == nil {
		f.writeSession = map[string]string{}
	}
	f.writeSession[name] = sessionID
}

func (f *fakeBackend) called(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeBackend) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

var (
	fakeShow    = &triadv1.ServerShowResponse{Name: "m1", ComputerId: "TRD-0000-0000-0000-0001", Mode: "failover"}
	fakeCreate  = &triadv1.ClusterCreateResponse{Mode: "failover", Leader: "m1"}
	fakeStatus  = &triadv1.ClusterStatusResponse{Status: "operational", Leader: "m1", Term: 3, Links: []*triadv1.Link{{A: "m1", B: "m2", State: "up"}}}
	fakeLicense = &triadv1.LicenseInfo{Serial: "TRIAD-1", Customer: "ACME"}
	fakeUsage   = []*triadv1.FeatureUsage{fakeCad, fakeSim}
	fakeLeases  = []*triadv1.Lease{{LeaseId: 7, Feature: "cad"}}
	fakeCad     = &triadv1.FeatureUsage{Feature: "cad", Version: 5, Capacity: 10, InUse: 2, Model: "concurrent", QueueLength: 3}
	fakeSim     = &triadv1.FeatureUsage{Feature: "sim", Version: 2, Capacity: 5, InUse: 1, Model: "countdown", PoolSeconds: 10 * 3600, PoolUsedSeconds: 3.2 * 3600}
)

func (f *fakeBackend) Discover(context.Context) *triadv1.DiscoverResponse {
	return &triadv1.DiscoverResponse{Name: "m1", Mode: "unconfigured", FailoverAddress: "127.0.0.1:4086", Tls: true}
}

func (f *fakeBackend) ServerShow(context.Context) *triadv1.ServerShowResponse {
	f.called("ServerShow")
	return fakeShow
}

func (f *fakeBackend) FormCluster(_ context.Context, members []string, standalone bool) (*triadv1.ClusterCreateResponse, error) {
	f.called("FormCluster")
	f.mu.Lock()
	f.members, f.standalone = members, standalone
	f.mu.Unlock()
	return fakeCreate, nil
}

func (f *fakeBackend) ClusterStatus(context.Context) *triadv1.ClusterStatusResponse {
	f.called("ClusterStatus")
	if f.status != nil {
		return f.status
	}
	return fakeStatus
}

func (f *fakeBackend) EnrollLicense(_ context.Context, sessionID string, file []byte) (*triadv1.LicenseInfo, bool, error) {
	f.wrote("EnrollLicense", sessionID)
	f.mu.Lock()
	already := f.enrolled != nil && string(f.enrolled) == string(file)
	f.enrolled = file
	f.mu.Unlock()
	if f.enrollErr != nil {
		return nil, false, f.enrollErr
	}
	return fakeLicense, already, nil
}

func (f *fakeBackend) Licenses(context.Context) []*triadv1.LicenseInfo {
	f.called("Licenses")
	return []*triadv1.LicenseInfo{fakeLicense}
}

func (f *fakeBackend) UsageFeatures(_ context.Context, consistent bool) ([]*triadv1.FeatureUsage, error) {
	f.called("UsageFeatures")
	f.mu.Lock()
	f.consistent = consistent
	f.mu.Unlock()
	return fakeUsage, nil
}

func (f *fakeBackend) UsageQueue(_ context.Context, consistent bool) ([]*triadv1.QueuedCheckout, error) {
	f.called("Queue")
	f.mu.Lock()
	f.consistent = consistent
	f.mu.Unlock()
	return []*triadv1.QueuedCheckout{
		{Feature: "cad", Version: 5, Count: 1, Position: 1, User: "ann", Host: "ws1", Pid: 11,
			WaitingSinceUnixMs: 1_700_000_000_000, WaitDeadlineUnixMs: 1_700_000_300_000, ViaMember: "m1"},
		{Feature: "cad", Version: 5, Count: 2, Position: 2, User: "bob", Host: "ws2", Pid: 12,
			WaitingSinceUnixMs: 1_700_000_001_000, WaitDeadlineUnixMs: 1_700_003_601_000, ViaMember: "m2"},
	}, nil
}

func (f *fakeBackend) UsageLeases(_ context.Context, consistent bool) ([]*triadv1.Lease, error) {
	f.called("Leases")
	f.mu.Lock()
	f.leasesConsistent = consistent
	f.mu.Unlock()
	return fakeLeases, nil
}

func (f *fakeBackend) RemoveLicense(_ context.Context, sessionID, _, requestID string) (string, error) {
	f.wrote("RemoveLicense", sessionID)
	f.mu.Lock()
	f.requestIDs = append(f.requestIDs, requestID)
	f.mu.Unlock()
	return "removed", nil
}

func (f *fakeBackend) UsageUsers(context.Context) []*triadv1.UserUsage {
	f.called("UsageUsers")
	return []*triadv1.UserUsage{{User: "alice", Host: "ws1", Feature: "cad", Version: 5, Seats: 1, Leases: 1}}
}

func (f *fakeBackend) HistoryReport(_ context.Context, kind string, params map[string]string) ([]byte, error) {
	return []byte(`{"kind":"` + kind + `"}`), nil
}

func (f *fakeBackend) Denials(context.Context) *triadv1.UsageDenialsResponse {
	f.called("Denials")
	return &triadv1.UsageDenialsResponse{Member: "m1"}
}

func (f *fakeBackend) ReleaseLease(_ context.Context, sessionID string, _ uint64) (bool, error) {
	f.wrote("ReleaseLease", sessionID)
	return true, nil
}

func (f *fakeBackend) RecycleNamedUser(_ context.Context, sessionID, _, _, requestID string) (string, error) {
	f.wrote("RecycleNamedUser", sessionID)
	f.mu.Lock()
	f.requestIDs = append(f.requestIDs, requestID)
	f.mu.Unlock()
	return "recycled", nil
}

func (f *fakeBackend) SetRules(_ context.Context, sessionID, text string) (*triadv1.RulesShowResponse, error) {
	f.wrote("SetRules", sessionID)
	return &triadv1.RulesShowResponse{Text: text, Rules: 1}, nil
}

func (f *fakeBackend) Rules(context.Context) *triadv1.RulesShowResponse {
	f.called("Rules")
	return &triadv1.RulesShowResponse{Text: "EXCLUDE cad USER eve\n", Rules: 1}
}

func (f *fakeBackend) AuthState(context.Context) AuthState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth
}

func (f *fakeBackend) MemberName() string { return "m1" }

func (f *fakeBackend) PeerMember(net.IP) (string, bool) { return "", false }

func (f *fakeBackend) OpenSession(_ context.Context, s *Session, _ uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions == nil {
		f.sessions = map[string]*Session{}
	}
	f.sessions[s.ID] = s
	return nil
}

func (f *fakeBackend) UseSession(_ context.Context, id string) (*Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown or closed session: connect again")
	}
	return s, nil
}

func (f *fakeBackend) CloseSession(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, id)
	return nil
}

func (f *fakeBackend) Sessions(context.Context) []*Session { return nil }

func (f *fakeBackend) Settings(context.Context) *triadv1.ServerSettings {
	return &triadv1.ServerSettings{RemotePolicy: "full"}
}

func (f *fakeBackend) SetPasswords(_ context.Context, _ string, full, restricted []byte, _ uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if full != nil {
		f.auth.FullHash = full
	}
	if restricted != nil {
		f.auth.RestrictedHash = restricted
	}
	f.auth.Version++
	return nil
}

func (f *fakeBackend) SetSettings(context.Context, string, *triadv1.ServerSetRequest) (*triadv1.ServerSettings, error) {
	f.called("SetSettings")
	return &triadv1.ServerSettings{}, nil
}

func (f *fakeBackend) VendorTrust(context.Context) (*triadv1.VendorTrustListResponse, error) {
	f.called("VendorTrust")
	return &triadv1.VendorTrustListResponse{Keys: []*triadv1.VendorKey{{KeyId: "0123456789abcdef"}}}, nil
}

func (f *fakeBackend) AddVendorKey(_ context.Context, sessionID string, _ []byte) (*triadv1.VendorTrustListResponse, error) {
	f.wrote("AddVendorKey", sessionID)
	return &triadv1.VendorTrustListResponse{Message: "added"}, nil
}

func (f *fakeBackend) RemoveVendorKey(_ context.Context, sessionID, _ string) (*triadv1.VendorTrustListResponse, error) {
	f.wrote("RemoveVendorKey", sessionID)
	return &triadv1.VendorTrustListResponse{Message: "removed"}, nil
}

var _ Backend = (*fakeBackend)(nil)

// session opens a session on s and returns a header carrying it.
func session(t *testing.T, s *Service, mode string) *triadv1.AdminHeader {
	t.Helper()
	r, err := s.Connect(context.Background(), &triadv1.ConnectRequest{Header: header(), Mode: mode})
	if err != nil {
		t.Fatalf("connect %s: %v", mode, err)
	}
	h := header()
	h.SessionToken = r.SessionToken
	return h
}

// every admin RPC, called with the given header.
func adminRPCs(s *Service, h *triadv1.AdminHeader) map[string]func() (proto.Message, error) {
	ctx := context.Background()
	return map[string]func() (proto.Message, error){
		"ServerShow": func() (proto.Message, error) {
			return s.ServerShow(ctx, &triadv1.ServerShowRequest{Header: h})
		},
		"ClusterCreate": func() (proto.Message, error) {
			return s.ClusterCreate(ctx, &triadv1.ClusterCreateRequest{Header: h, Members: []string{"a:1", "b:1", "c:1"}})
		},
		"ClusterStatus": func() (proto.Message, error) {
			return s.ClusterStatus(ctx, &triadv1.ClusterStatusRequest{Header: h})
		},
		"LicenseEnroll": func() (proto.Message, error) {
			return s.LicenseEnroll(ctx, &triadv1.LicenseEnrollRequest{Header: h, LicenseFile: []byte("license")})
		},
		"LicenseList": func() (proto.Message, error) {
			return s.LicenseList(ctx, &triadv1.LicenseListRequest{Header: h})
		},
		"UsageFeatures": func() (proto.Message, error) {
			return s.UsageFeatures(ctx, &triadv1.UsageFeaturesRequest{Header: h, Consistent: true})
		},
		"UsageLeases": func() (proto.Message, error) {
			return s.UsageLeases(ctx, &triadv1.UsageLeasesRequest{Header: h, Consistent: true})
		},
	}
}

func TestServiceRefusesOldProtocol(t *testing.T) {
	for _, h := range []*triadv1.AdminHeader{{ProtocolVersion: 0}, nil} {
		b := &fakeBackend{}
		s := NewService(b, "1.2.3")
		for name, call := range adminRPCs(s, h) {
			resp, err := call()
			if status.Code(err) != codes.FailedPrecondition {
				t.Errorf("%s with header %v: err = %v, want FailedPrecondition", name, h, err)
				continue
			}
			msg := status.Convert(err).Message()
			for _, want := range []string{"protocol 0", fmt.Sprintf("(%d,", ProtocolVersion), "1.2.3", "upgrade triadctl"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: message %q does not contain %q", name, msg, want)
				}
			}
			if resp != nil && !isNilMessage(resp) {
				t.Errorf("%s: response %v alongside the refusal", name, resp)
			}
		}
		if calls := b.callList(); len(calls) != 0 {
			t.Errorf("backend called despite the refusal: %v", calls)
		}
	}
}

func showWithSettings() *triadv1.ServerShowResponse {
	r := proto.Clone(fakeShow).(*triadv1.ServerShowResponse)
	r.Settings = &triadv1.ServerSettings{RemotePolicy: "full"}
	return r
}

func isNilMessage(m proto.Message) bool { return !m.ProtoReflect().IsValid() }

func TestServiceDelegatesCurrentProtocol(t *testing.T) {
	for _, v := range []uint32{ProtocolVersion, ProtocolVersion + 1} {
		b := &fakeBackend{}
		s := NewService(b, "1.2.3")
		h := session(t, s, ModeFull)
		h.ProtocolVersion = v
		rpcs := adminRPCs(s, h)
		want := map[string]struct {
			backend string
			resp    proto.Message
		}{
			"ServerShow":    {"ServerShow", showWithSettings()},
			"ClusterCreate": {"FormCluster", fakeCreate},
			"ClusterStatus": {"ClusterStatus", fakeStatus},
			"LicenseEnroll": {"EnrollLicense", &triadv1.LicenseEnrollResponse{License: fakeLicense}},
			"LicenseList":   {"Licenses", &triadv1.LicenseListResponse{Licenses: []*triadv1.LicenseInfo{fakeLicense}}},
			"UsageFeatures": {"UsageFeatures", &triadv1.FeaturesResponse{Features: fakeUsage}},
			"UsageLeases":   {"Leases", &triadv1.UsageLeasesResponse{Leases: fakeLeases}},
		}
		for name, call := range rpcs {
			before := len(b.callList())
			resp, err := call()
			if err != nil {
				t.Errorf("%s (protocol %d): %v", name, v, err)
				continue
			}
			calls := b.callList()[before:]
			if len(calls) != 1 || calls[0] != want[name].backend {
				t.Errorf("%s: backend calls %v, want [%s]", name, calls, want[name].backend)
			}
			if !proto.Equal(resp, want[name].resp) {
				t.Errorf("%s: response %v, want the backend's %v", name, resp, want[name].resp)
			}
		}
		if got := b.members; len(got) != 3 || got[0] != "a:1" || got[2] != "c:1" || b.standalone {
			t.Errorf("FormCluster got members %v standalone %v", got, b.standalone)
		}
		if !b.consistent {
			t.Errorf("Usage did not get consistent=true")
		}
		if !b.leasesConsistent {
			t.Errorf("UsageLeases did not get consistent=true")
		}
		if string(b.enrolled) != "license" {
			t.Errorf("EnrollLicense got %q", b.enrolled)
		}
	}
}

func TestServicePassesBackendError(t *testing.T) {
	want := status.Error(codes.PermissionDenied, "signature invalid")
	b := &fakeBackend{enrollErr: want}
	s := NewService(b, "dev")
	_, err := s.LicenseEnroll(context.Background(), &triadv1.LicenseEnrollRequest{Header: session(t, s, ModeFull), LicenseFile: []byte("x")})
	if !errors.Is(err, want) && err != want {
		t.Fatalf("LicenseEnroll err = %v, want the backend's %v", err, want)
	}
}

func TestLicenseEnrollSizeLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		ok   bool
	}{
		{"empty", 0, false},
		{"one byte", 1, true},
		{"exactly 1 MiB", 1 << 20, true},
		{"over 1 MiB", 1<<20 + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBackend{}
			s := NewService(b, "dev")
			_, err := s.LicenseEnroll(context.Background(), &triadv1.LicenseEnrollRequest{Header: session(t, s, ModeFull), LicenseFile: make([]byte, tc.size)})
			if tc.ok {
				if err != nil {
					t.Fatalf("LicenseEnroll of %d bytes: %v", tc.size, err)
				}
				if len(b.enrolled) != tc.size {
					t.Errorf("backend got %d bytes, want %d", len(b.enrolled), tc.size)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("LicenseEnroll of %d bytes: err = %v, want InvalidArgument", tc.size, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "1 MiB") {
				t.Errorf("message %q should give the size limit", msg)
			}
			if calls := b.callList(); len(calls) != 0 {
				t.Errorf("backend called for a refused file: %v", calls)
			}
		})
	}
}

// TestRestrictedSessionRefusesWrites: every call that changes something is
// PERMISSION_DENIED in a restricted session, naming the call and the mode
// it needs, and never reaches the backend.
func TestRestrictedSessionRefusesWrites(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "dev")
	h := session(t, s, ModeRestricted)
	ctx := context.Background()
	policy := PolicyNone
	writes := map[string]func() error{
		"cluster create": func() error {
			_, err := s.ClusterCreate(ctx, &triadv1.ClusterCreateRequest{Header: h, Members: []string{"a:1", "b:1", "c:1"}})
			return err
		},
		"usage recycle": func() error {
			_, err := s.UsageRecycle(ctx, &triadv1.UsageRecycleRequest{Header: h, User: "alice", Feature: "cad"})
			return err
		},
		"rules set": func() error {
			_, err := s.RulesSet(ctx, &triadv1.RulesSetRequest{Header: h, Text: "EXCLUDE cad USER eve\n"})
			return err
		},
		"usage release": func() error {
			_, err := s.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: h, LeaseId: 7})
			return err
		},
		"license enroll": func() error {
			_, err := s.LicenseEnroll(ctx, &triadv1.LicenseEnrollRequest{Header: h, LicenseFile: []byte("license")})
			return err
		},
		"license remove": func() error {
			_, err := s.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: h, Serial: "TRIAD-1"})
			return err
		},
		"server set": func() error {
			_, err := s.ServerSet(ctx, &triadv1.ServerSetRequest{Header: h, RemotePolicy: &policy})
			return err
		},
		"password set": func() error {
			_, err := s.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: h, Which: ModeFull, NewPassword: "x"})
			return err
		},
		"vendor trust add": func() error {
			_, err := s.VendorTrustAdd(ctx, &triadv1.VendorTrustAddRequest{Header: h, PublicKeyFile: []byte("key")})
			return err
		},
		"vendor trust remove": func() error {
			_, err := s.VendorTrustRemove(ctx, &triadv1.VendorTrustRemoveRequest{Header: h, KeyId: "0123456789abcdef"})
			return err
		},
	}
	for name, call := range writes {
		st := status.Convert(call())
		want := "permission denied: " + name + " needs full mode; this session is restricted"
		if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), want) {
			t.Errorf("%s in a restricted session: %v %q, want PermissionDenied containing %q", name, st.Code(), st.Message(), want)
		}
	}
	if calls := b.callList(); len(calls) != 0 {
		t.Errorf("the backend was called for refused writes: %v", calls)
	}
	// Reads work in the same session.
	if _, err := s.RulesShow(ctx, &triadv1.RulesShowRequest{Header: h}); err != nil {
		t.Errorf("rules show in a restricted session: %v", err)
	}
}

// TestPasswordChangeNeedsCurrentFull: once the full password is set,
// changing either password needs the current full one, even in a full
// session (opened before the password was set, so without it).
func TestPasswordChangeNeedsCurrentFull(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "dev")
	// Six wrong passwords below: more than the default throttle allows
	// (throttle_test.go tests throttling).
	s.SetThrottle(NewThrottle(10, DefaultThrottleEvery, nil))
	h := session(t, s, ModeFull)
	ctx := context.Background()
	set := func(which, current, next string) error {
		_, err := s.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: h, Which: which, CurrentFullPassword: current, NewPassword: next})
		return err
	}
	if err := set(ModeFull, "", "Fu11-secret"); err != nil {
		t.Fatalf("first full password (none set, none asked): %v", err)
	}
	before := b.AuthState(ctx)
	for _, current := range []string{"", "wrong", "look-only"} {
		for _, which := range []string{ModeFull, ModeRestricted} {
			st := status.Convert(set(which, current, "look-only"))
			if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "the current full password is wrong") {
				t.Errorf("password set %s with current %q: %v %q, want PermissionDenied: the current full password is wrong", which, current, st.Code(), st.Message())
			}
		}
	}
	if after := b.AuthState(ctx); after.Version != before.Version || !bytes.Equal(after.FullHash, before.FullHash) || len(after.RestrictedHash) != 0 {
		t.Fatalf("a refused change changed the passwords")
	}
	if err := set(ModeRestricted, "Fu11-secret", "look-only"); err != nil {
		t.Fatalf("password set restricted with the current full password: %v", err)
	}
	if err := set(ModeFull, "Fu11-secret", "N3w-secret"); err != nil {
		t.Fatalf("password set full with the current full password: %v", err)
	}
	if st := status.Convert(set(ModeFull, "Fu11-secret", "again")); st.Code() != codes.PermissionDenied {
		t.Fatalf("the old full password still changes passwords: %v", st.Err())
	}
}

// TestOpenSessionSurvivesPolicyChange: the remote policy is checked at
// connect time only: a remote session opened under policy full stays usable
// (even for writes) when the policy becomes none; new remote connects are
// refused.
func TestOpenSessionSurvivesPolicyChange(t *testing.T) {
	b := &fakeBackend{auth: AuthState{Policy: PolicyFull, Activated: true}}
	s := NewService(b, "dev")
	full := session(t, s, ModeFull)
	ro := session(t, s, ModeRestricted)
	b.mu.Lock()
	b.auth.Policy = PolicyNone
	b.mu.Unlock()
	ctx := context.Background()
	_, err := s.Connect(ctx, &triadv1.ConnectRequest{Header: header(), Mode: ModeRestricted})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "remote administration is denied") {
		t.Fatalf("new remote connect under policy none: %v", err)
	}
	if _, err := s.ServerShow(ctx, &triadv1.ServerShowRequest{Header: ro}); err != nil {
		t.Errorf("restricted session opened before the change: %v", err)
	}
	policy := PolicyFull
	if _, err := s.ServerSet(ctx, &triadv1.ServerSetRequest{Header: full, RemotePolicy: &policy}); err != nil {
		t.Errorf("full session opened before the change: %v", err)
	}
}

// Idempotent writes reach the backend with the caller's request id, or with
// a fresh one per call when the caller sends none.
func TestAdminWritesCarryRequestIDs(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "dev")
	h := session(t, s, ModeFull)
	ctx := context.Background()
	for range 2 {
		if _, err := s.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: h, Serial: "TRIAD-1", RequestId: "rm-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UsageRecycle(ctx, &triadv1.UsageRecycleRequest{Header: h, User: "alice", Feature: "cad", RequestId: "rc-1"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: h, Serial: "TRIAD-1"}); err != nil {
			t.Fatal(err)
		}
	}
	ids := b.requestIDs
	if len(ids) != 5 || ids[0] != "rm-1" || ids[1] != "rm-1" || ids[2] != "rc-1" {
		t.Fatalf("request ids %q, want the caller's", ids)
	}
	if ids[3] == "" || ids[4] == "" || ids[3] == ids[4] {
		t.Fatalf("generated request ids %q and %q: want two different ones", ids[3], ids[4])
	}
}
