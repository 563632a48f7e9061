package admin

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// TestWritesCarryTheCallersSession: every write reaches the backend with
// the id of the session it was made under, which the state machine checks
// again when it applies the write.
func TestWritesCarryTheCallersSession(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "dev")
	h := session(t, s, ModeFull)
	want := TokenID(h.SessionToken)
	ctx := context.Background()
	calls := map[string]func() error{
		"EnrollLicense": func() error {
			_, err := s.LicenseEnroll(ctx, &triadv1.LicenseEnrollRequest{Header: h, LicenseFile: []byte("license")})
			return err
		},
		"RemoveLicense": func() error {
			_, err := s.LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: h, Serial: "TRIAD-1"})
			return err
		},
		"ReleaseLease": func() error {
			_, err := s.UsageRelease(ctx, &triadv1.UsageReleaseRequest{Header: h, LeaseId: 7})
			return err
		},
		"RecycleNamedUser": func() error {
			_, err := s.UsageRecycle(ctx, &triadv1.UsageRecycleRequest{Header: h, User: "alice", Feature: "cad"})
			return err
		},
		"SetRules": func() error {
			_, err := s.RulesSet(ctx, &triadv1.RulesSetRequest{Header: h, Text: "EXCLUDE cad USER eve\n"})
			return err
		},
		"AddVendorKey": func() error {
			_, err := s.VendorTrustAdd(ctx, &triadv1.VendorTrustAddRequest{Header: h, PublicKeyFile: []byte("key file")})
			return err
		},
		"RemoveVendorKey": func() error {
			_, err := s.VendorTrustRemove(ctx, &triadv1.VendorTrustRemoveRequest{Header: h, KeyId: "0123456789ABCDEF"})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b.mu.Lock()
		got := b.writeSession[name]
		b.mu.Unlock()
		if got != want {
			t.Errorf("%s reached the backend with session %q, want the caller's %q", name, got, want)
		}
	}
}

// TestVendorTrustRequests: a list needs any session; bad key ids and empty
// key files are refused before the backend.
func TestVendorTrustRequests(t *testing.T) {
	b := &fakeBackend{}
	s := NewService(b, "dev")
	ctx := context.Background()
	if _, err := s.VendorTrustList(ctx, &triadv1.VendorTrustListRequest{Header: header()}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("list without a session: %v", err)
	}
	r, err := s.VendorTrustList(ctx, &triadv1.VendorTrustListRequest{Header: session(t, s, ModeRestricted)})
	if err != nil || len(r.Keys) != 1 {
		t.Fatalf("list in a restricted session: %v %v", r, err)
	}
	h := session(t, s, ModeFull)
	if _, err := s.VendorTrustRemove(ctx, &triadv1.VendorTrustRemoveRequest{Header: h, KeyId: "xyz"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("remove with a bad key id: %v", err)
	}
	if _, err := s.VendorTrustAdd(ctx, &triadv1.VendorTrustAddRequest{Header: h}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("add without a key file: %v", err)
	}
	for _, c := range b.callList() {
		if c == "AddVendorKey" || c == "RemoveVendorKey" {
			t.Fatalf("backend called for a refused request: %v", b.callList())
		}
	}
}

// TestCLIVendorTrust: `vendor trust list|add|remove` reach the service; add
// reads and checks the key file first; remove takes a key id or the file.
func TestCLIVendorTrust(t *testing.T) {
	b := &fakeBackend{}
	addr := startAdminServer(t, b)
	out, _, err := runCLI(t, "--server", addr, "vendor", "trust", "list")
	if err != nil || !strings.Contains(out, "0123456789abcdef") {
		t.Fatalf("vendor trust list: %q %v", out, err)
	}
	dir := t.TempDir()
	if _, _, err := runCLI(t, "vendor", "keygen", "--out", filepath.Join(dir, "v")); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, "--server", addr, "vendor", "trust", "add", filepath.Join(dir, "v.pub"))
	if err != nil || !strings.Contains(out, "added") {
		t.Fatalf("vendor trust add: %q %v", out, err)
	}
	_, _, err = runCLI(t, "--server", addr, "vendor", "trust", "add", filepath.Join(dir, "v.key"))
	wantErr(t, err, "PRIVATE key")
	out, _, err = runCLI(t, "--server", addr, "vendor", "trust", "remove", filepath.Join(dir, "v.pub"))
	if err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("vendor trust remove FILE: %q %v", out, err)
	}
	if _, _, err := runCLI(t, "--server", addr, "vendor", "trust", "remove", "0123456789abcdef"); err != nil {
		t.Fatalf("vendor trust remove KEY-ID: %v", err)
	}
	calls := strings.Join(b.callList(), " ")
	if strings.Count(calls, "AddVendorKey") != 1 || strings.Count(calls, "RemoveVendorKey") != 2 {
		t.Fatalf("backend calls %s", calls)
	}
}
