package admin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// observingBackend records the authentication failures reported to it.
type observingBackend struct {
	*fakeBackend
	mu       sync.Mutex
	failures []AuthFailure
}

func (o *observingBackend) AuthFailed(_ context.Context, f AuthFailure) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures = append(o.failures, f)
}

func (o *observingBackend) list() []AuthFailure {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]AuthFailure(nil), o.failures...)
}

func fromIP(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func throttledService(t *testing.T) (*Service, *observingBackend, *fakeClock) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := &observingBackend{fakeBackend: &fakeBackend{auth: AuthState{FullHash: hash, Version: 1, Policy: "full", Activated: true}}}
	s := NewService(b, "dev")
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s.SetThrottle(NewThrottle(3, 5*time.Second, clock.Now))
	return s, b, clock
}

func connectFrom(s *Service, ctx context.Context, pw string) error {
	_, err := s.Connect(ctx, &triadv1.ConnectRequest{Header: header(), Mode: ModeFull, Password: pw})
	return err
}

// Guessing passwords from one address: after the burst, every connect from
// it is refused RESOURCE_EXHAUSTED, the right password too, while another
// address still connects; after the wait one more attempt is allowed. Each
// failure is reported without the password.
func TestConnectThrottlesWrongPasswordsPerSource(t *testing.T) {
	s, b, clock := throttledService(t)
	attacker := fromIP("10.0.0.66")
	for i := 0; i < 3; i++ {
		if st := status.Convert(connectFrom(s, attacker, "guess")); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "wrong password") {
			t.Fatalf("guess %d: %v %q, want Unauthenticated wrong password", i+1, st.Code(), st.Message())
		}
	}
	for _, pw := range []string{"guess", "right"} {
		st := status.Convert(connectFrom(s, attacker, pw))
		if st.Code() != codes.ResourceExhausted || st.Message() != "too many failed password attempts from 10.0.0.66; wait 5s" {
			t.Fatalf("connect with %q from a throttled source: %v %q, want ResourceExhausted naming the IP and the wait", pw, st.Code(), st.Message())
		}
	}
	if err := connectFrom(s, fromIP("10.0.0.7"), "right"); err != nil {
		t.Fatalf("another source is throttled too: %v", err)
	}
	if err := connectFrom(s, fromIP("10.0.0.7"), "right"); err != nil {
		t.Fatalf("another source is throttled too: %v", err)
	}
	clock.Add(3 * time.Second)
	if st := status.Convert(connectFrom(s, attacker, "right")); st.Code() != codes.ResourceExhausted || !strings.HasSuffix(st.Message(), "wait 2s") {
		t.Fatalf("3 s later: %v %q, want still throttled, wait 2s", st.Code(), st.Message())
	}
	clock.Add(2 * time.Second)
	if st := status.Convert(connectFrom(s, attacker, "guess")); st.Code() != codes.Unauthenticated {
		t.Fatalf("after the wait: %v %q, want one more attempt (wrong password)", st.Code(), st.Message())
	}
	if st := status.Convert(connectFrom(s, attacker, "right")); st.Code() != codes.ResourceExhausted {
		t.Fatalf("right after that attempt: %v %q, want throttled again", st.Code(), st.Message())
	}
	clock.Add(5 * time.Second)
	if err := connectFrom(s, attacker, "right"); err != nil {
		t.Fatalf("the right password after the wait: %v", err)
	}

	var reasons []string
	for _, f := range b.list() {
		if f.Source != "10.0.0.66" || f.Op != "connect" || f.Mode != ModeFull || !strings.Contains(f.Origin, "10.0.0.66") {
			t.Fatalf("failure reported as %+v", f)
		}
		if strings.Contains(f.Message, "guess") || strings.Contains(f.Message, "right") {
			t.Fatalf("a password reached the failure report: %+v", f)
		}
		reasons = append(reasons, f.Reason)
	}
	want := "wrong_password wrong_password wrong_password throttled throttled throttled wrong_password throttled"
	if got := strings.Join(reasons, " "); got != want {
		t.Fatalf("reported failures: %s\nwant:               %s", got, want)
	}
	// Throttled refusals are audited once a minute per source, the rest counted.
	var reported []bool
	for _, f := range b.list() {
		if f.Reason == ReasonThrottled {
			reported = append(reported, f.Report)
		}
	}
	if len(reported) != 4 || !reported[0] || reported[1] || reported[2] || reported[3] {
		t.Fatalf("throttled refusals reported %v, want only the first within the minute", reported)
	}
}

// A missing password is the prompt's cue, not a failure: it neither
// throttles nor is reported.
func TestPasswordRequiredIsNotAFailure(t *testing.T) {
	s, b, _ := throttledService(t)
	for i := 0; i < 10; i++ {
		if st := status.Convert(connectFrom(s, fromIP("10.0.0.8"), "")); st.Code() != codes.Unauthenticated || !strings.HasPrefix(st.Message(), "password required") {
			t.Fatalf("connect without a password: %v %q", st.Code(), st.Message())
		}
	}
	if err := connectFrom(s, fromIP("10.0.0.8"), "right"); err != nil {
		t.Fatalf("connect after ten prompts: %v", err)
	}
	if n := len(b.list()); n != 0 {
		t.Fatalf("%d failures reported for missing passwords", n)
	}
}

// Wrong current passwords in `password set` count against the same source.
func TestPasswordSetThrottled(t *testing.T) {
	s, b, _ := throttledService(t)
	ctx := fromIP("10.0.0.9")
	r, err := s.Connect(ctx, &triadv1.ConnectRequest{Header: header(), Mode: ModeFull, Password: "right"})
	if err != nil {
		t.Fatal(err)
	}
	h := header()
	h.SessionToken = r.SessionToken
	set := func(current string) error {
		_, err := s.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: h, Which: ModeFull, CurrentFullPassword: current, NewPassword: "next"})
		return err
	}
	for i := 0; i < 3; i++ {
		if st := status.Convert(set("guess")); st.Code() != codes.PermissionDenied {
			t.Fatalf("wrong current password %d: %v %q", i+1, st.Code(), st.Message())
		}
	}
	if st := status.Convert(set("right")); st.Code() != codes.ResourceExhausted {
		t.Fatalf("password set from a throttled source: %v %q, want ResourceExhausted", st.Code(), st.Message())
	}
	if st := status.Convert(connectFrom(s, ctx, "right")); st.Code() != codes.ResourceExhausted {
		t.Fatalf("connect from the same throttled source: %v %q", st.Code(), st.Message())
	}
	fs := b.list()
	if len(fs) != 5 || fs[0].Op != "password set" || fs[0].Reason != ReasonWrongPassword || fs[0].Origin == "" {
		t.Fatalf("reported %+v", fs)
	}
}

// A refusal by the remote policy is reported (audited once a minute per
// source) but does not throttle: no password was tried.
func TestPolicyRefusalReported(t *testing.T) {
	s, b, clock := throttledService(t)
	b.fakeBackend.auth.Policy = "none"
	for i := 0; i < 5; i++ {
		if st := status.Convert(connectFrom(s, fromIP("10.0.0.10"), "right")); st.Code() != codes.PermissionDenied {
			t.Fatalf("connect under policy none: %v %q", st.Code(), st.Message())
		}
	}
	clock.Add(time.Minute)
	connectFrom(s, fromIP("10.0.0.10"), "right")
	fs := b.list()
	if len(fs) != 6 || fs[0].Reason != ReasonPolicy || !fs[0].Report || fs[1].Report || !fs[5].Report || fs[5].Suppressed != 4 {
		t.Fatalf("reported %+v", fs)
	}
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		ctx  context.Context
		want string
	}{
		{fromIP("192.0.2.1"), "192.0.2.1"},
		{fromIP("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"},
		{fromIP("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64"},
		{peer.NewContext(context.Background(), &peer.Peer{Addr: &net.UnixAddr{Name: "/d/admin.sock", Net: "unix"}}), "local socket"},
		{context.Background(), "unknown"},
	} {
		if got := sourceOf(tc.ctx); got != tc.want {
			t.Errorf("sourceOf = %q, want %q", got, tc.want)
		}
	}
}

// The throttle forgets sources with a full allowance when it holds too many.
func TestThrottleBoundsMemory(t *testing.T) {
	clock := &fakeClock{now: time.Unix(0, 0)}
	th := NewThrottle(3, time.Second, clock.Now)
	for i := 0; i < maxSources; i++ {
		th.Fail(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String())
	}
	clock.Add(time.Hour)
	th.Fail("192.0.2.1")
	th.mu.Lock()
	n := len(th.sources)
	th.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d sources remembered after a sweep, want 1", n)
	}
}

// The attack over the network with triadctl: wrong passwords from
// 127.0.0.2 get that address throttled (the right password included),
// while triadctl from 127.0.0.3 still gets in.
func TestCLIPasswordGuessingThrottled(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := &observingBackend{fakeBackend: &fakeBackend{auth: AuthState{FullHash: hash, Version: 1, Policy: "full", Activated: true}}}
	addr := startAdminServer(t, b)
	dir := t.TempDir()
	wrong, right := filepath.Join(dir, "wrong"), filepath.Join(dir, "right")
	os.WriteFile(wrong, []byte("guess\n"), 0o600)
	os.WriteFile(right, []byte("right\n"), 0o600)
	run := func(src, pwFile string) error {
		_, _, err := runCLI(t, "--server", addr, "--source-ip", src, "--password-file", pwFile, "--mode", "full", "server", "show")
		return err
	}
	for i := 0; i < DefaultThrottleBurst; i++ {
		wantErr(t, run("127.0.0.2", wrong), "wrong password")
	}
	wantErr(t, run("127.0.0.2", right), "too many failed password attempts from 127.0.0.2; wait ")
	if err := run("127.0.0.3", right); err != nil {
		t.Fatalf("triadctl from another address: %v", err)
	}
	n := 0
	for _, f := range b.list() {
		if f.Source == "127.0.0.2" {
			n++
		}
	}
	if n != DefaultThrottleBurst+1 {
		t.Fatalf("%d failures reported for 127.0.0.2, want %d", n, DefaultThrottleBurst+1)
	}
}
