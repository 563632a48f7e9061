package admin

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// Password throttling: each source (client IP; an IPv6 client by its /64,
// which one host usually owns whole) may get a password wrong a few times
// in a row, then one attempt every few seconds. While a source is
// throttled, every connect from it is refused before its password is
// looked at, a correct one included: a guesser cannot tell a hit from a
// miss. Other sources are not affected.

// Defaults: 5 wrong passwords at once, then one attempt every 5 seconds
// (at most 720 guesses an hour from one source; bcrypt already costs ~50 ms
// each).
const (
	DefaultThrottleBurst = 5
	DefaultThrottleEvery = 5 * time.Second
	// reportEvery: a source refused again and again (throttled, or by the
	// remote policy) is reported to the audit log at most this often, with
	// the number of refusals since; the log and metrics count every one.
	reportEvery = time.Minute
	// maxSources bounds the memory held for sources; sources with a full
	// allowance are forgotten first.
	maxSources = 10000
)

// Reasons an authentication failed (the metric label and the audit detail).
const (
	ReasonWrongPassword = "wrong_password"
	ReasonThrottled     = "throttled"
	ReasonPolicy        = "policy"
)

// AuthFailure is one refused authentication. It never carries the password.
type AuthFailure struct {
	// Op is the call: "connect" or "password set".
	Op string
	// Mode is the mode asked for (connect) or the password changed.
	Mode string
	// Source is the throttling key: the client's IP, its IPv6 /64, or
	// "local socket".
	Source string
	// Origin is how the member sees the caller ("remote tool 10.0.0.7:5123 via alpha").
	Origin string
	Reason string
	// Message is the refusal sent to the caller.
	Message string
	// Report: write it to the audit log. False for a refusal repeated within
	// a minute from the same source for the same reason (Suppressed counts
	// those that were not reported before this one).
	Report     bool
	Suppressed int
}

// AuthObserver is implemented by a Backend that logs, counts and audits
// authentication failures (package server does).
type AuthObserver interface {
	AuthFailed(ctx context.Context, f AuthFailure)
}

// Throttle limits failed password attempts per source.
type Throttle struct {
	burst int
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	sources map[string]*sourceState
}

type sourceState struct {
	lim      *rate.Limiter
	lastSeen time.Time
	// per reason: when last reported, and refusals not reported since
	reported   map[string]time.Time
	suppressed map[string]int
}

// NewThrottle allows burst failures at once, then one every every; now is
// the clock (time.Now when nil).
func NewThrottle(burst int, every time.Duration, now func() time.Time) *Throttle {
	if now == nil {
		now = time.Now
	}
	return &Throttle{burst: burst, every: every, now: now, sources: map[string]*sourceState{}}
}

func (t *Throttle) stateLocked(src string, now time.Time) *sourceState {
	st, ok := t.sources[src]
	if !ok {
		if len(t.sources) >= maxSources {
			t.sweepLocked(now)
		}
		st = &sourceState{lim: rate.NewLimiter(rate.Every(t.every), t.burst), reported: map[string]time.Time{}, suppressed: map[string]int{}}
		t.sources[src] = st
	}
	st.lastSeen = now
	return st
}

// sweepLocked forgets sources whose allowance is whole again, then, if
// still full, the least recently seen.
func (t *Throttle) sweepLocked(now time.Time) {
	var oldest string
	for k, st := range t.sources {
		if st.lim.TokensAt(now) >= float64(t.burst) && now.Sub(st.lastSeen) > reportEvery {
			delete(t.sources, k)
			continue
		}
		if oldest == "" || st.lastSeen.Before(t.sources[oldest].lastSeen) {
			oldest = k
		}
	}
	if len(t.sources) >= maxSources && oldest != "" {
		delete(t.sources, oldest)
	}
}

// Wait is how long src must wait before its next password attempt (0: it
// may try now).
func (t *Throttle) Wait(src string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sources[src]
	if !ok {
		return 0
	}
	now := t.now()
	tokens := st.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) * float64(t.every))
}

// Fail records a failed attempt from src.
func (t *Throttle) Fail(src string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.stateLocked(src, now).lim.AllowN(now, 1)
}

// report decides whether a refusal is written to the audit log: always for
// a wrong password (the throttle bounds those), at most once a minute per
// source for a repeated refusal of another reason.
func (t *Throttle) report(f *AuthFailure) {
	if f.Reason == ReasonWrongPassword {
		f.Report = true
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	st := t.stateLocked(f.Source, now)
	if last, ok := st.reported[f.Reason]; ok && now.Sub(last) < reportEvery {
		st.suppressed[f.Reason]++
		return
	}
	f.Report, f.Suppressed = true, st.suppressed[f.Reason]
	st.reported[f.Reason] = now
	st.suppressed[f.Reason] = 0
}

// sourceOf is the throttling key of the caller.
func sourceOf(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if p.Addr.Network() == "unix" {
		return "local socket"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		host = p.Addr.String()
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
	}
	return ip.String()
}

// waitSeconds rounds a wait up to whole seconds for messages.
func waitSeconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64((d+time.Second-1)/time.Second))
}

// throttled returns the RESOURCE_EXHAUSTED refusal when src must wait.
func (s *Service) throttled(ctx context.Context, op, mode, src, origin string) (string, bool) {
	wait := s.throttle.Wait(src)
	if wait <= 0 {
		return "", false
	}
	msg := fmt.Sprintf("too many failed password attempts from %s; wait %s", src, waitSeconds(wait))
	s.authFailed(ctx, AuthFailure{Op: op, Mode: mode, Source: src, Origin: origin, Reason: ReasonThrottled, Message: msg})
	return msg, true
}

// authFailed reports f to the backend, if it listens.
func (s *Service) authFailed(ctx context.Context, f AuthFailure) {
	s.throttle.report(&f)
	if o, ok := s.b.(AuthObserver); ok {
		o.AuthFailed(ctx, f)
	}
}

// SetThrottle replaces the password throttle (tests use a fake clock).
func (s *Service) SetThrottle(t *Throttle) { s.throttle = t }
