package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// gen makes random but plausible command sequences: few serials, features
// and request ids, so that collisions, retries, supersedes and full pools
// happen often.
type gen struct {
	r    *rand.Rand
	now  int64
	m    *model
	sent []*fsmpb.License
	// The generator's admin session: id, open, last used.
	sess     string
	sessN    int
	sessLast int64
}

// admin returns the admin write build makes with the generator's session;
// when that session is not live (formed cluster), it returns the command
// that opens a new one instead.
func (g *gen) admin(build func(session string) *fsmpb.Command) *fsmpb.Command {
	if !g.m.formed {
		return build("")
	}
	if g.sess == "" || g.now-g.sessLast > DefaultSessionIdleTimeout.Milliseconds() {
		g.sessN++
		g.sess, g.sessLast = fmt.Sprint("gen-admin-", g.sessN), g.now
		return openCmd(g.sess, ModeFull, true, 0)
	}
	g.sessLast = g.now
	return build(g.sess)
}

var genFeatures = []string{"a", "b", "c"}

func (g *gen) serial() string { return fmt.Sprint("S", g.r.IntN(8)) }

func (g *gen) advance() {
	switch n := g.r.IntN(20); {
	case n == 0:
		g.now += 500_000 + g.r.Int64N(1_500_000)
	case n < 4:
	default:
		g.now += g.r.Int64N(15_000)
	}
}

func (g *gen) next() *fsmpb.Command {
	g.advance()
	var cmd *fsmpb.Command
	switch n := g.r.IntN(100); {
	case !g.m.formed && g.r.IntN(4) != 0:
		cmd = g.form()
	case n < 12:
		l := g.license()
		cmd = g.admin(func(id string) *fsmpb.Command {
			c := enrollCmd(l)
			c.GetEnrollLicense().SessionId = id
			return c
		})
	case n < 15:
		serial := g.serial()
		cmd = g.admin(func(id string) *fsmpb.Command {
			c := removeCmd(serial)
			c.GetRemoveLicense().SessionId = id
			return c
		})
	case n < 75:
		cmd = g.batch()
	case n < 88:
		cmd = expireCmd()
	case n < 93:
		cmd = rebaseCmd()
	default:
		cmd = g.form()
	}
	cmd.NowMs = g.now
	return cmd
}

func (g *gen) form() *fsmpb.Command {
	switch g.r.IntN(8) {
	case 0:
		return formCmd(modeStandalone, clusterIDs...)
	case 1:
		return formCmd(modeFailover, "x", "y")
	}
	return formCmd(modeFailover, clusterIDs...)
}

func (g *gen) license() *fsmpb.License {
	if len(g.sent) > 0 && g.r.IntN(7) == 0 {
		return proto.Clone(g.sent[g.r.IntN(len(g.sent))]).(*fsmpb.License)
	}
	after := g.now + g.r.Int64N(300_000) - 200_000
	until := after + g.r.Int64N(900_000)
	if g.r.IntN(20) == 0 {
		until = g.now - 1
	}
	var feats []*fsmpb.Feature
	for range g.r.IntN(3) + 1 {
		f := feat(genFeatures[g.r.IntN(len(genFeatures))], uint32(g.r.IntN(5)), uint32(g.r.IntN(4)))
		f.GraceSeconds = uint32(g.r.IntN(3)) * 600
		feats = append(feats, f)
	}
	l := lic(g.serial(), after, until, feats...)
	switch g.r.IntN(40) {
	case 0:
		l.Features = nil
	case 1:
		l.Serial = ""
	case 2:
		l.BindingMode = modeStandalone
	case 3:
		l.ComputerIds[1] = "cid-x"
	}
	g.r.Shuffle(len(l.ComputerIds), func(i, j int) {
		l.ComputerIds[i], l.ComputerIds[j] = l.ComputerIds[j], l.ComputerIds[i]
	})
	if g.r.IntN(5) == 0 {
		l.Supersedes = []string{g.serial()}
	}
	g.sent = append(g.sent, proto.Clone(l).(*fsmpb.License))
	return l
}

func (g *gen) leaseIDs() []uint64 {
	ids := make([]uint64, g.r.IntN(3)+1)
	for i := range ids {
		ids[i] = 1 + g.r.Uint64N(g.m.next+1)
	}
	return ids
}

var genTTLs = []int64{0, 500, 5_000, 20_000, 60_000, 5_000_000}

// genClients are the client ids of scoped grants ("" is refused).
var genClients = []string{"client-1", "client-2", ""}

// secrets gives, for each id, mostly its lease's secret as the model knows
// it, else a wrong or a missing one; sometimes fewer secrets than ids.
func (g *gen) secrets(ids []uint64) [][]byte {
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		switch n := g.r.IntN(10); {
		case n < 6:
			if l := g.m.leases[id]; l != nil {
				out = append(out, []byte(l.secret))
			} else {
				out = append(out, []byte("s0"))
			}
		case n < 8:
			out = append(out, []byte(fmt.Sprint("s", g.r.IntN(1000))))
		default:
			out = append(out, nil)
		}
	}
	return out[:len(out)-g.r.IntN(2)]
}

func (g *gen) batch() *fsmpb.Command {
	var ops []*fsmpb.Op
	for range g.r.IntN(4) + 1 {
		switch n := g.r.IntN(20); {
		case n < 11:
			feature := genFeatures[g.r.IntN(len(genFeatures))]
			if g.r.IntN(30) == 0 {
				feature = "z"
			}
			req := fmt.Sprint("r", g.r.IntN(30))
			if g.r.IntN(50) == 0 {
				req = ""
			}
			op := grantOp(req, feature, uint32(g.r.IntN(6)), uint32(g.r.IntN(4)))
			op.GetGrant().TtlMs = genTTLs[g.r.IntN(len(genTTLs))]
			// Most grants carry a leader-stamped secret and are scoped by
			// one of two clients; some are as older builds wrote them.
			if g.r.IntN(4) != 0 {
				op.GetGrant().Secret = []byte(fmt.Sprint("s", g.r.IntN(1000)))
				op.GetGrant().ClientId = genClients[g.r.IntN(len(genClients))]
			}
			ops = append(ops, op)
		case n < 16:
			ids := g.leaseIDs()
			ops = append(ops, &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: ids, Secrets: g.secrets(ids)}}})
		case n < 19:
			ids := g.leaseIDs()
			ops = append(ops, &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: ids, Secrets: g.secrets(ids)}}})
		default:
			// A release without secrets: only legacy leases go (the
			// administrator's release is session-gated, fsm/enforce_test.go).
			ops = append(ops, &fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: g.leaseIDs()}}})
		}
	}
	return batchCmd(ops...)
}

func eqOutcomes(a, b []outcome) bool {
	return slices.EqualFunc(a, b, func(x, y outcome) bool {
		return x.code == y.code && x.lease == y.lease && slices.Equal(x.leases, y.leases) && slices.Equal(x.ids, y.ids)
	})
}

// checkAgainstModel compares the snapshot contents and the read accessors
// with the model.
func checkAgainstModel(t *testing.T, f *FSM, m *model, now int64, r *rand.Rand) {
	t.Helper()
	s := f.s // read directly: this goroutine is the only user
	if len(s.leases) != len(m.leases) {
		t.Fatalf("%d leases, model has %d", len(s.leases), len(m.leases))
	}
	for id, e := range s.leases {
		l, w := e, m.leases[id]
		if w == nil {
			t.Fatalf("lease %v, not in the model", l)
		}
		if l.Id != w.id || l.Feature != w.feature || l.Version != w.version || l.Count != w.count ||
			l.ExpiresMs != w.expires || l.RenewedMs != w.renewed || l.TtlMs != w.ttl || l.RequestId != w.req {
			t.Fatalf("lease %v, model %+v", l, *w)
		}
	}
	if s.requests.len() != len(m.requests) {
		t.Fatalf("%d request records, model has %d", s.requests.len(), len(m.requests))
	}
	for k, rec := range s.requests.all() {
		secret := ""
		if k.client != "" {
			secret = "scoped"
		}
		w, ok := m.requests[reqKey(k.client, k.request, secret)]
		if !ok || rec.LeaseId != w.lease || (w.ended && rec.EndedMs != w.endedMs) {
			t.Fatalf("request %v, model %+v", rec, w)
		}
	}
	if len(s.licenses) != len(m.licenses) {
		t.Fatalf("%d licenses, model has %d", len(s.licenses), len(m.licenses))
	}
	for _, at := range []int64{now, now + r.Int64N(60_000), now + 600_000 + r.Int64N(60_000)} {
		if got, want := f.HasExpired(at), m.hasExpired(at); got != want {
			t.Fatalf("HasExpired(now+%d) = %v, model %v", at-now, got, want)
		}
	}
	usage := f.Usage(now)
	overBy := map[string]string{}
	for _, a := range f.LicenseAlarms(now, 0) {
		if a.Kind == AlarmOverCapacity {
			overBy[a.Subject] = a.Message
		}
	}
	for _, name := range append(slices.Clone(genFeatures), "z") {
		var capacity, inUse uint64
		var overflow bool
		for _, u := range usage {
			if u.Feature == name {
				capacity += uint64(u.Capacity)
				inUse += uint64(u.InUse)
				overflow = overflow || u.InUse > u.Capacity
			}
		}
		if capacity != m.supply(name, 0, now) || inUse != m.demand(name, 0) {
			t.Fatalf("usage of %s: capacity %d in use %d, model %d %d", name, capacity, inUse, m.supply(name, 0, now), m.demand(name, 0))
		}
		fits := true
		var excess uint64 // seats without a compatible seat (Hall's deficiency)
		for v := range uint32(6) {
			d, sup := m.demand(name, v), m.supply(name, v, now)
			fits = fits && d <= sup
			if d > sup {
				excess = max(excess, d-sup)
			}
			// Every lease shows in a row whose version serves it.
			var shown uint64
			for _, u := range usage {
				if u.Feature == name && u.Version >= v {
					shown += uint64(u.InUse)
				}
			}
			if shown < d {
				t.Fatalf("usage of %s shows %d seats in rows of version >= %d, but %d leases asked for such versions: %v", name, shown, v, d, usage)
			}
		}
		if fits && overflow {
			t.Fatalf("usage of %s shows a row over capacity although the leases fit: %v", name, usage)
		}
		msg, alarmed := overBy[name]
		if alarmed == fits {
			t.Fatalf("over-capacity alarm for %s: %v (%q), but the leases fit: %v (model demand/supply per version)", name, alarmed, msg, fits)
		}
		if alarmed {
			var inUse, licensed uint64
			if _, err := fmt.Sscanf(msg[strings.LastIndex(msg, ": ")+2:], "%d seats in use, %d licensed", &inUse, &licensed); err != nil || inUse-licensed != excess {
				t.Fatalf("over-capacity alarm %q: %v; want %d seats beyond the licensed ones", msg, err, excess)
			}
		}
	}
}

// runRandom applies one random sequence to an FSM and the model, checking
// every result and, after each command, the state and a snapshot round
// trip. It returns the log and the results.
func runRandom(t *testing.T, seed uint64, n int) ([]*raft.Log, []any) {
	r := rand.New(rand.NewPCG(seed, 0x7471ad))
	m := newModel()
	g := &gen{r: r, now: t0, m: m}
	f := New()
	var logs []*raft.Log
	var results []any
	for i := range n {
		cmd := g.next()
		index := uint64(i + 1)
		l := commandLog(t, index, cmd)
		res := f.Apply(l)
		want := m.apply(cmd, index)
		if got := outcomesOf(cmd, res); !eqOutcomes(got, want) {
			t.Fatalf("seed %d command %d %v:\n got %+v\nwant %+v\nresult %v", seed, i, cmd, got, want, res)
		}
		logs, results = append(logs, l), append(results, res)

		a := f.MarshalSnapshot()
		restored := New()
		if err := restored.Restore(io.NopCloser(bytes.NewReader(a))); err != nil {
			t.Fatalf("seed %d command %d: restore: %v", seed, i, err)
		}
		if b := restored.MarshalSnapshot(); !bytes.Equal(a, b) {
			t.Fatalf("seed %d command %d: snapshot differs after restore", seed, i)
		}
		checkAgainstModel(t, f, m, g.now, r)
		// Go on with the restored copy half of the time, so that the
		// indexes Restore rebuilds are exercised by later commands.
		if r.IntN(2) == 0 {
			f = restored
		}
	}
	return logs, results
}

func TestRandomAgainstModel(t *testing.T) {
	sequences := 4000
	switch {
	case testing.Short():
		sequences = 300
	case raceEnabled:
		sequences = 700
	}
	for seed := range uint64(sequences) {
		r := rand.New(rand.NewPCG(seed, 1))
		logs, results := runRandom(t, seed, 50+r.IntN(151))
		if seed%4 != 0 {
			continue
		}
		// The same log through ApplyBatch, in random chunks with a
		// configuration entry mixed in, gives the same results and state.
		f := New()
		var got []any
		for i := 0; i < len(logs); {
			j := min(len(logs), i+1+r.IntN(20))
			chunk := slices.Clone(logs[i:j])
			chunk = append(chunk, &raft.Log{Index: logs[j-1].Index, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}})
			out := f.ApplyBatch(chunk)
			if len(out) != len(chunk) || out[len(out)-1] != nil {
				t.Fatalf("ApplyBatch: %d results for %d logs, last %v", len(out), len(chunk), out[len(out)-1])
			}
			got = append(got, out[:len(out)-1]...)
			i = j
		}
		for i := range results {
			if !proto.Equal(got[i].(proto.Message), results[i].(proto.Message)) {
				t.Fatalf("seed %d entry %d: ApplyBatch gave %v, Apply gave %v", seed, i, got[i], results[i])
			}
		}
		oneByOne := New()
		for _, l := range logs {
			oneByOne.Apply(l)
		}
		if !bytes.Equal(f.MarshalSnapshot(), oneByOne.MarshalSnapshot()) {
			t.Fatalf("seed %d: ApplyBatch and Apply end in different states", seed)
		}
		if f.AppliedIndex() != logs[len(logs)-1].Index {
			t.Fatalf("AppliedIndex %d after ApplyBatch", f.AppliedIndex())
		}
	}
}

// TestDeterminism applies one log to two FSMs and compares the snapshots
// byte for byte, after every entry.
func TestDeterminism(t *testing.T) {
	for seed := range uint64(20) {
		m := newModel()
		g := &gen{r: rand.New(rand.NewPCG(seed, 2)), now: t0, m: m}
		a, b := New(), New()
		for i := range 300 {
			cmd := g.next()
			m.apply(cmd, uint64(i+1))
			l := commandLog(t, uint64(i+1), cmd)
			a.Apply(l)
			b.Apply(l)
			if !bytes.Equal(a.MarshalSnapshot(), b.MarshalSnapshot()) {
				t.Fatalf("seed %d entry %d: snapshots differ", seed, i)
			}
		}
	}
}

// TestConcurrentReads runs the read accessors and snapshots while a random
// log is applied, for the race detector.
func TestConcurrentReads(t *testing.T) {
	m := newModel()
	g := &gen{r: rand.New(rand.NewPCG(99, 3)), now: t0, m: m}
	var logs []*raft.Log
	for i := range 2000 {
		cmd := g.next()
		m.apply(cmd, uint64(i+1))
		logs = append(logs, commandLog(t, uint64(i+1), cmd))
	}
	f := New()
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				now := f.LastNowMs()
				_ = f.Usage(now)
				_ = f.HasExpired(now)
				_ = f.GraceSeconds("a", now)
				for _, l := range f.Leases() {
					f.Lease(l.Id)
				}
				for _, l := range f.Licenses() {
					f.LicenseState(l.Serial, now)
				}
				_ = f.Cluster()
				_ = f.AppliedIndex()
				if s, err := f.Snapshot(); err == nil {
					_ = s.Persist(discardSink{})
				}
			}
		})
	}
	for i := 0; i < len(logs); i += 10 {
		f.ApplyBatch(logs[i:min(i+10, len(logs))])
		if i%500 == 0 {
			_ = f.Restore(io.NopCloser(bytes.NewReader(f.MarshalSnapshot())))
		}
	}
	close(done)
	readers.Wait()
}
