package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Lease secrets and per-client request ids, attacked through Apply.

// grantBy is a checkout by client with the secret the leader stamped.
func grantBy(client, req, secret string) *fsmpb.Op {
	op := grantOp(req, "cad", 1, 1)
	op.GetGrant().ClientId = client
	op.GetGrant().Secret = []byte(secret)
	return op
}

func renewWith(ids []uint64, secrets ...string) *fsmpb.Op {
	op := renewOp(ids...)
	for _, s := range secrets {
		op.GetRenew().Secrets = append(op.GetRenew().Secrets, []byte(s))
	}
	return op
}

func releaseWith(ids []uint64, secrets ...string) *fsmpb.Op {
	op := releaseOp(ids...)
	for _, s := range secrets {
		op.GetRelease().Secrets = append(op.GetRelease().Secrets, []byte(s))
	}
	return op
}

// forceReleaseOp is an administrator's release under the harness's full
// session (opened when needed).
func forceReleaseOp(h *harness, now int64, id uint64) *fsmpb.Op {
	return &fsmpb.Op{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: id, SessionId: h.liveSession(now)}}}
}

// stateBytes is the replicated state without the fields every command
// moves (last now, applied index): equal bytes mean the command changed
// nothing.
func leaseStateBytes(t *testing.T, h *harness) []byte {
	t.Helper()
	snap := h.f.s.toSnapshot()
	snap.LastNowMs = 0
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// secretPair returns a harness holding lease 1 (client-a, secret "sa") and
// lease 2 (client-b, secret "sb") of cad, 5 seats in all.
func secretPair(t *testing.T) *harness {
	h := formed(t)
	h.mustEnroll(t0, lic("L", t0-day, t0+day, feat("cad", 1, 5)))
	for i, op := range []*fsmpb.Op{grantBy("client-a", "ra", "sa"), grantBy("client-b", "rb", "sb")} {
		r := h.op(t0, op)
		if r.Code != fsmpb.Code_OK || r.Lease.Id != uint64(i+1) {
			t.Fatalf("grant %d: %v %q %v", i, r.Code, r.Message, r.Lease)
		}
	}
	return h
}

func TestLeaseSecretRefusals(t *testing.T) {
	attacks := []struct {
		name   string
		secret []string // nil: none sent
	}{
		{"no secret", nil},
		{"empty secret", []string{""}},
		{"wrong secret", []string{"xx"}},
		{"other lease's secret", []string{"sb"}},
		{"prefix of the secret", []string{"s"}},
		{"secret with a suffix", []string{"sa\x00"}},
	}
	kinds := []struct {
		name string
		op   func(secrets []string) *fsmpb.Op
	}{
		{"renew", func(s []string) *fsmpb.Op { return renewWith([]uint64{1}, s...) }},
		{"release", func(s []string) *fsmpb.Op { return releaseWith([]uint64{1}, s...) }},
	}
	for _, k := range kinds {
		for _, a := range attacks {
			t.Run(k.name+"/"+a.name, func(t *testing.T) {
				h := secretPair(t)
				before := leaseStateBytes(t, h)
				r := h.op(t0+5*second, k.op(a.secret))
				if len(r.Leases) != 1 || r.Leases[0].Code != fsmpb.Code_WRONG_LEASE_SECRET || r.Leases[0].Message != "lease 1: wrong lease secret" {
					t.Fatalf("%s of lease 1 with %v: %v", k.name, a.secret, r.Leases)
				}
				if !bytes.Equal(leaseStateBytes(t, h), before) {
					t.Fatalf("a refused %s changed the state", k.name)
				}
				if l, live := h.f.Lease(1); !live || l.RenewedMs != t0 {
					t.Fatalf("lease 1 after the attack: %v live=%v", l, live)
				}
			})
		}
	}
}

func TestLeaseSecretAllowsItsHolder(t *testing.T) {
	h := secretPair(t)
	// One batch of both leases: each is judged on its own secret.
	r := h.op(t0+5*second, renewWith([]uint64{1, 2}, "sa", "sb-wrong"))
	if r.Leases[0].Code != fsmpb.Code_OK || r.Leases[0].ExpiresMs != t0+35*second || r.Leases[1].Code != fsmpb.Code_WRONG_LEASE_SECRET {
		t.Fatalf("renew: %v", r.Leases)
	}
	if l, _ := h.f.Lease(2); l.RenewedMs != t0 {
		t.Fatalf("lease 2 renewed with a wrong secret: %v", l)
	}
	// Fewer secrets than ids: the ones without a secret are refused.
	r = h.op(t0+6*second, releaseWith([]uint64{2, 1}, "sb"))
	if r.Leases[0].Code != fsmpb.Code_OK || r.Leases[1].Code != fsmpb.Code_WRONG_LEASE_SECRET {
		t.Fatalf("release: %v", r.Leases)
	}
	if _, live := h.f.Lease(1); !live {
		t.Fatalf("lease 1 released without its secret")
	}
	if _, live := h.f.Lease(2); live {
		t.Fatalf("lease 2 not released with its secret")
	}
	// A released lease is gone for its holder too: not found, not a secret leak.
	if r := h.op(t0+7*second, releaseWith([]uint64{2}, "sb")); r.Leases[0].Code != fsmpb.Code_NOT_FOUND {
		t.Fatalf("second release: %v", r.Leases)
	}
	roundTrip(t, h.f)
}

func TestForceReleaseNeedsNoSecret(t *testing.T) {
	h := secretPair(t)
	r := h.op(t0+second, forceReleaseOp(h, t0+second, 1))
	r99 := h.op(t0+second, forceReleaseOp(h, t0+second, 99))
	if r.Leases[0].Code != fsmpb.Code_OK || r99.Leases[0].Code != fsmpb.Code_NOT_FOUND {
		t.Fatalf("force release: %v %v", r.Leases, r99.Leases)
	}
	if _, live := h.f.Lease(1); live {
		t.Fatalf("lease 1 survived a force release")
	}
	if u := h.f.Usage(t0); u[0].InUse != 1 {
		t.Fatalf("in use %d after force release, want 1", u[0].InUse)
	}
	// The holder's retry learns that its lease ended.
	wantResult(t, h.op(t0+2*second, grantBy("client-a", "ra", "new")), fsmpb.Code_NOT_FOUND, "which has ended")
}

func TestBorrowSecret(t *testing.T) {
	h := formed(t)
	f := feat("cad", 1, 2)
	f.MaxBorrowSeconds = 3 * 24 * 3600
	h.mustEnroll(t0, lic("B1", t0, t0+365*day, f))
	b := borrowOp("b", "cad", day)
	b.GetBorrow().Grant.ClientId, b.GetBorrow().Grant.Secret = "client-a", []byte("sa")
	r := h.op(t0, b)
	if r.Code != fsmpb.Code_OK || string(r.Lease.Secret) != "sa" {
		t.Fatalf("borrow: %v %q %v", r.Code, r.Message, r.Lease)
	}
	id := r.Lease.Id
	for _, secret := range []string{"", "sb", "s"} {
		ext := extendOp(id, 2*day)
		ext.GetBorrow().Secret = []byte(secret)
		before := leaseStateBytes(t, h)
		wantResult(t, h.op(t0+hour, ext), fsmpb.Code_WRONG_LEASE_SECRET, fmt.Sprintf("lease %d: wrong lease secret", id))
		if !bytes.Equal(leaseStateBytes(t, h), before) {
			t.Fatalf("a refused extension (secret %q) changed the state", secret)
		}
	}
	ext := extendOp(id, 2*day)
	ext.GetBorrow().Secret = []byte("sa")
	if r := h.op(t0+hour, ext); r.Code != fsmpb.Code_OK || r.Lease.ExpiresMs != t0+hour+2*day {
		t.Fatalf("extend with the secret: %v %q %v", r.Code, r.Message, r.Lease)
	}
	// Returning early is a release: the secret is needed.
	if r := h.op(t0+2*hour, releaseWith([]uint64{id}, "nope")); r.Leases[0].Code != fsmpb.Code_WRONG_LEASE_SECRET {
		t.Fatalf("return with a wrong secret: %v", r.Leases)
	}
	if r := h.op(t0+2*hour, releaseWith([]uint64{id}, "sa")); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("return with the secret: %v", r.Leases)
	}
}

func TestRequestIDsAreScopedByClient(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L", t0-day, t0+day, feat("cad", 1, 5)))
	a := h.op(t0, grantBy("client-a", "r1", "sa"))
	// Another client with the same request id gets its own lease, never
	// client-a's lease or secret.
	b := h.op(t0+second, grantBy("client-b", "r1", "sb"))
	if b.Code != fsmpb.Code_OK || b.Lease.Id == a.Lease.Id || string(b.Lease.Secret) != "sb" || b.Lease.ClientId != "client-b" {
		t.Fatalf("client-b reusing client-a's request id: %v %q %v", b.Code, b.Message, b.Lease)
	}
	// Each client's retry (the leader stamps a fresh secret each time)
	// returns that client's own lease with the secret it was granted with.
	for _, c := range []struct {
		client string
		want   *fsmpb.Lease
	}{{"client-a", a.Lease}, {"client-b", b.Lease}} {
		r := h.op(t0+2*second, grantBy(c.client, "r1", "fresh"))
		if r.Code != fsmpb.Code_OK || r.Lease.Id != c.want.Id || !bytes.Equal(r.Lease.Secret, c.want.Secret) {
			t.Fatalf("retry by %s: %v %q %v, want lease %d", c.client, r.Code, r.Message, r.Lease, c.want.Id)
		}
	}
	if u := h.f.Usage(t0); u[0].InUse != 2 {
		t.Fatalf("in use %d, want 2 (a retry took a seat)", u[0].InUse)
	}
	// When client-a's lease ends, client-b's record is untouched.
	h.op(t0+3*second, releaseWith([]uint64{a.Lease.Id}, "sa"))
	wantResult(t, h.op(t0+4*second, grantBy("client-a", "r1", "x")), fsmpb.Code_NOT_FOUND, "which has ended")
	if r := h.op(t0+4*second, grantBy("client-b", "r1", "x")); r.Lease.GetId() != b.Lease.Id {
		t.Fatalf("client-b's retry after client-a's release: %v %q", r.Code, r.Message)
	}
	g := roundTrip(t, h.f)
	if r := (&harness{t: t, f: g, index: h.index}).op(t0+5*second, grantBy("client-b", "r1", "x")); r.Lease.GetId() != b.Lease.Id || string(r.Lease.Secret) != "sb" {
		t.Fatalf("client-b's retry after a restore: %v %q %v", r.Code, r.Message, r.Lease)
	}
}

func TestScopedGrantNeedsClientID(t *testing.T) {
	h := formed(t)
	h.mustEnroll(t0, lic("L", t0-day, t0+day, feat("cad", 1, 5)))
	before := leaseStateBytes(t, h)
	wantResult(t, h.op(t0, grantBy("", "r1", "s")), fsmpb.Code_INVALID_ARGUMENT, "needs a client id")
	if !bytes.Equal(leaseStateBytes(t, h), before) {
		t.Fatalf("a refused grant changed the state")
	}
}

// Leases and request records written before lease secrets (grants without
// a secret, as in the format-1 golden snapshot) keep working: no secret is
// needed, the record stays unscoped, and only its holder resolves to it.
func TestLeasesFromBeforeSecrets(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "snapshot-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, index: f.AppliedIndex()}
	now := f.LastNowMs() + second
	// Leases 1 (request req-1 of client-1) and 2 have no secret: renewed
	// and released without one.
	if r := h.op(now, renewOp(1)); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("renew of an old lease: %v", r.Leases)
	}
	if r := h.op(now, releaseOp(2)); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("release of an old lease: %v", r.Leases)
	}
	// Another client reusing req-1 gets a new lease, not lease 1.
	if r := h.op(now, grantBy("client-2", "req-1", "s2")); r.Code != fsmpb.Code_OK || r.Lease.Id == 1 {
		t.Fatalf("another client reusing an old request id: %v %q %v", r.Code, r.Message, r.Lease)
	}
	// Its holder's retry (now with a stamped secret) still resolves to lease 1.
	if r := h.op(now, grantBy("client-1", "req-1", "s1")); r.Lease.GetId() != 1 || len(r.Lease.Secret) != 0 {
		t.Fatalf("holder's retry of an old request: %v %q %v", r.Code, r.Message, r.Lease)
	}
	if r := h.op(now, releaseOp(1)); r.Leases[0].Code != fsmpb.Code_OK {
		t.Fatalf("release of an old lease: %v", r.Leases)
	}
	roundTrip(t, h.f)
}

func TestReadsHideSecrets(t *testing.T) {
	h := secretPair(t)
	for _, l := range h.f.Leases() {
		if len(l.Secret) != 0 {
			t.Fatalf("Leases shows lease %d's secret", l.Id)
		}
	}
	if l, _ := h.f.Lease(1); len(l.Secret) != 0 {
		t.Fatalf("Lease shows the secret")
	}
	// The state itself still holds it (reads hand out copies).
	if string(h.f.s.leases[1].Secret) != "sa" {
		t.Fatalf("stored secret %q", h.f.s.leases[1].Secret)
	}
}

// TestDeterminismWithSecrets applies random logs of scoped grants,
// renewals and releases with right, wrong and missing secrets, and force
// releases, to two FSMs (one restored from a snapshot half way) and
// compares the snapshots byte for byte.
func TestDeterminismWithSecrets(t *testing.T) {
	clients := []string{"c1", "c2", "c3"}
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 7))
		a, b := formed(t), formed(t)
		secrets := map[uint64]string{}
		l := lic("L", t0-day, t0+day, feat("cad", 1, 20))
		a.mustEnroll(t0, l)
		b.mustEnroll(t0, l)
		now := t0
		pick := func() (uint64, string) {
			id := 1 + r.Uint64N(uint64(len(secrets))+2)
			switch r.IntN(3) {
			case 0:
				return id, secrets[id]
			case 1:
				return id, fmt.Sprint("wrong", r.IntN(3))
			}
			return id, ""
		}
		for i := range 300 {
			now += r.Int64N(3 * second)
			var ops []*fsmpb.Op
			for range r.IntN(4) + 1 {
				switch n := r.IntN(10); {
				case n < 4:
					ops = append(ops, grantBy(clients[r.IntN(3)], fmt.Sprint("r", r.IntN(8)), fmt.Sprint("s", i, "-", len(ops))))
				case n < 7:
					id, s := pick()
					ops = append(ops, renewWith([]uint64{id}, s))
				case n < 9:
					id, s := pick()
					ops = append(ops, releaseWith([]uint64{id}, s))
				default:
					id, _ := pick()
					ops = append(ops, releaseWith([]uint64{id})) // no secret: refused unless legacy
				}
			}
			cmd := batchCmd(ops...)
			if r.IntN(10) == 0 {
				cmd = expireCmd()
			}
			resA := a.apply(now, proto.Clone(cmd).(*fsmpb.Command))
			resB := b.apply(now, proto.Clone(cmd).(*fsmpb.Command))
			if br, ok := resA.(*fsmpb.BatchResult); ok {
				for _, res := range br.Results {
					if l := res.GetLease(); l != nil {
						secrets[l.Id] = string(l.Secret)
					}
				}
				if !proto.Equal(br, resB.(*fsmpb.BatchResult)) {
					t.Fatalf("seed %d entry %d: results differ", seed, i)
				}
			}
			if !bytes.Equal(a.f.MarshalSnapshot(), b.f.MarshalSnapshot()) {
				t.Fatalf("seed %d entry %d: snapshots differ", seed, i)
			}
			if i == 150 {
				b.f = roundTrip(t, b.f)
			}
		}
	}
}
