package admin

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// TestServiceUsageReleaseSelector: a selector releases every matching
// lease and lists them; an empty selector, or ids with a selector, are
// refused; a restricted session is refused before the backend is asked;
// a retry with the same request id gets the first answer.
func TestServiceUsageReleaseSelector(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "test")
	ctx := context.Background()
	full := session(t, s, ModeFull)

	r, err := s.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: full, Feature: "cad", RequestId: "req-1"})
	if err != nil || !r.GetReleased() || len(r.GetLeases()) != 1 || r.GetLeases()[0].GetLeaseId() != 7 {
		t.Fatalf("release --feature cad: %v %v", r, err)
	}
	r, err = s.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: full, Feature: "sim", RequestId: "req-2"})
	if err != nil || r.GetReleased() || len(r.GetLeases()) != 0 {
		t.Fatalf("release --feature sim (no lease): %v %v", r, err)
	}
	// The retry of req-1 answers as the first attempt did, without releasing again.
	n := strings.Count(strings.Join(b.callList(), " "), "ReleaseLease")
	r, err = s.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: full, Feature: "cad", RequestId: "req-1"})
	if err != nil || len(r.GetLeases()) != 1 || strings.Count(strings.Join(b.callList(), " "), "ReleaseLease") != n {
		t.Fatalf("retry of req-1: %v %v (calls %v)", r, err, b.callList())
	}
	for _, req := range []*triadv1.UsageReleaseRequest{{Header: full}, {Header: full, LeaseId: 7, User: "alice"}} {
		if _, err := s.UsageRelease(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want INVALID_ARGUMENT", req, err)
		}
	}
	restricted := session(t, s, ModeRestricted)
	before := len(b.callList())
	for _, req := range []*triadv1.UsageReleaseRequest{{Header: restricted, User: "alice"}, {Header: restricted, LeaseId: 7}} {
		if _, err := s.UsageRelease(ctx, req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("restricted %v: %v, want PERMISSION_DENIED", req, err)
		}
	}
	if calls := b.callList()[before:]; len(calls) != 0 {
		t.Errorf("a restricted release reached the backend: %v", calls)
	}
}

// TestCLIUsageReleaseRefusesEmptySelector: nothing is sent without a
// lease id or a selector, and ids and a selector do not mix.
func TestCLIUsageReleaseRefusesEmptySelector(t *testing.T) {
	b := &fakeBackend{}
	addr := startAdminServer(t, b)
	_, _, err := runCLI(t, "--server", addr, "usage", "release")
	wantErr(t, err, "empty selector")
	_, _, err = runCLI(t, "--server", addr, "usage", "release", "7", "--user", "alice")
	wantErr(t, err, "not both")
	_, _, err = runCLI(t, "--server", addr, "usage", "release", "x7")
	wantErr(t, err, `"x7" is not a lease id`)
	for _, c := range b.callList() {
		if c == "ReleaseLease" {
			t.Errorf("a refused command released a lease: %v", b.callList())
		}
	}
	out, _, err := runCLI(t, "--server", addr, "usage", "release", "--feature", "cad")
	if err != nil || !strings.Contains(out, "released 1 lease(s)") || !strings.Contains(out, "may check out again") {
		t.Errorf("release --feature cad: %v\n%s", err, out)
	}
}

// TestUsageViewFilters: the holder view joins rows and leases, shows the
// licensed version, and filters.
func TestUsageViewFilters(t *testing.T) {
	rows := []*triadv1.FeatureUsage{
		{Feature: "cad", Version: 1, Capacity: 2, InUse: 1, QueueLength: 2}, {Feature: "cad", Version: 3, Capacity: 1, InUse: 1, QueueLength: 2},
		{Feature: "sim", Version: 1, Capacity: 5},
	}
	leases := []*triadv1.Lease{
		{LeaseId: 1, Feature: "cad", Version: 0, LicensedVersion: 1, User: "alice", Host: "ws1"},
		{LeaseId: 2, Feature: "cad", Version: 3, LicensedVersion: 3, User: "bob", Host: "ws2", Borrowed: true},
	}
	v := buildUsageView(rows, leases, usageFilter{})
	if len(v) != 2 || v[0].Capacity != 3 || v[0].InUse != 2 || v[0].Queued != 2 || len(v[0].Versions) != 2 || len(v[1].Holders) != 0 {
		t.Fatalf("view %+v", v)
	}
	if h := v[0].Holders[0]; h.Version != 1 || h.RequestedVersion != 0 || h.State != "active" {
		t.Errorf("alice's holder %+v: want licensed 1, requested 0, active", h)
	}
	if h := v[0].Holders[1]; h.State != "borrowed" {
		t.Errorf("bob's holder %+v: want borrowed", h)
	}
	if v := buildUsageView(rows, leases, usageFilter{user: "bob"}); len(v) != 1 || len(v[0].Holders) != 1 || v[0].Holders[0].LeaseID != 2 {
		t.Errorf("--user bob: %+v", v)
	}
	if v := buildUsageView(rows, leases, usageFilter{feature: "sim"}); len(v) != 1 || v[0].Feature != "sim" {
		t.Errorf("--feature sim: %+v", v)
	}
	if v := buildUsageView(rows, leases, usageFilter{host: "nowhere"}); len(v) != 0 {
		t.Errorf("--host nowhere: %+v", v)
	}
}
