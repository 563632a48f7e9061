package fsm

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

// model is a deliberately naive reference of the FSM semantics, written
// without looking at the implementation's shortcuts: validity and capacity
// are recomputed from scratch by brute force on every question.
type model struct {
	formed   bool
	mode     string
	ids      []string // sorted
	licenses map[string]*fsmpb.License
	leases   map[uint64]*mLease
	requests map[string]*mRequest // by reqKey
	next     uint64
}

// reqKey is the model's request table key: a grant with a secret scopes
// its request id by its client id; one without (older builds) does not.
func reqKey(client, req, secret string) string {
	if secret == "" {
		return "unscoped/" + req
	}
	return "client " + client + "/" + req
}

type mLease struct {
	id               uint64
	req, feature     string
	client, secret   string
	version, count   uint32
	expires, renewed int64
	ttl              int64
}

type mRequest struct {
	lease   uint64
	ended   bool
	endedMs int64
	denied  fsmpb.Code // the refusal of a refused request (lease 0)
}

// outcome is what the model predicts for one op or command.
type outcome struct {
	code   fsmpb.Code
	lease  uint64       // Grant: the lease id
	leases []fsmpb.Code // Renew, Release: per id
	ids    []uint64     // ExpireLeases: the expired ids
}

func newModel() *model {
	return &model{licenses: map[string]*fsmpb.License{}, leases: map[uint64]*mLease{}, requests: map[string]*mRequest{}, next: 1}
}

func (m *model) form(fc *fsmpb.FormCluster) outcome {
	if m.formed {
		return outcome{code: fsmpb.Code_ALREADY_FORMED}
	}
	want := map[string]int{modeStandalone: 1, modeFailover: 3}[fc.Mode]
	if want == 0 || len(fc.Members) != want {
		return outcome{code: fsmpb.Code_INVALID_ARGUMENT}
	}
	var names, ids []string
	for _, mb := range fc.Members {
		if mb.Name == "" || mb.ComputerId == "" || slices.Contains(names, mb.Name) || slices.Contains(ids, mb.ComputerId) {
			return outcome{code: fsmpb.Code_INVALID_ARGUMENT}
		}
		names = append(names, mb.Name)
		ids = append(ids, mb.ComputerId)
	}
	slices.Sort(ids)
	m.formed, m.mode, m.ids = true, fc.Mode, ids
	return outcome{}
}

func (m *model) superseded(serial string) bool {
	for _, l := range m.licenses {
		if slices.Contains(l.Supersedes, serial) {
			return true
		}
	}
	return false
}

func (m *model) valid(l *fsmpb.License, now int64) bool {
	return l.ValidAfterMs <= now && now <= l.ValidUntilMs && !m.superseded(l.Serial)
}

func (m *model) enroll(l *fsmpb.License, now int64) outcome {
	if !m.formed {
		return outcome{code: fsmpb.Code_NOT_FORMED}
	}
	if l.Serial == "" || len(l.Features) == 0 || slices.Contains(l.Supersedes, l.Serial) {
		return outcome{code: fsmpb.Code_INVALID_ARGUMENT}
	}
	// Licenses no valid file can hold travel unsigned (enrollCmd).
	if _, err := license.Parse(l.Raw); err != nil {
		return outcome{code: fsmpb.Code_SIGNATURE_INVALID}
	}
	ids := slices.Clone(l.ComputerIds)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if l.BindingMode != m.mode || !slices.Equal(ids, m.ids) {
		return outcome{code: fsmpb.Code_BINDING_MISMATCH}
	}
	if now > l.ValidUntilMs {
		return outcome{code: fsmpb.Code_LICENSE_EXPIRED}
	}
	if old, ok := m.licenses[l.Serial]; ok {
		if proto.Equal(old, l) {
			return outcome{}
		}
		return outcome{code: fsmpb.Code_ALREADY_EXISTS}
	}
	if m.superseded(l.Serial) {
		return outcome{code: fsmpb.Code_SUPERSEDED}
	}
	m.licenses[l.Serial] = proto.Clone(l).(*fsmpb.License)
	return outcome{}
}

func (m *model) remove(serial string) outcome {
	if _, ok := m.licenses[serial]; !ok {
		return outcome{code: fsmpb.Code_NOT_FOUND}
	}
	delete(m.licenses, serial)
	return outcome{}
}

// demand is the seats held by live leases of feature at version >= t.
func (m *model) demand(feature string, t uint32) uint64 {
	var n uint64
	for _, l := range m.leases {
		if l.feature == feature && l.version >= t {
			n += uint64(l.count)
		}
	}
	return n
}

// supply is the seats of valid licenses for feature at version >= t.
func (m *model) supply(feature string, t uint32, now int64) uint64 {
	var n uint64
	for _, l := range m.licenses {
		if !m.valid(l, now) {
			continue
		}
		for _, f := range l.Features {
			if f.Name == feature && f.Version >= t {
				n += uint64(f.Count)
			}
		}
	}
	return n
}

func (m *model) grant(g *fsmpb.Grant, now int64, index uint64) outcome {
	if g.RequestId == "" || g.Feature == "" {
		return outcome{code: fsmpb.Code_INVALID_ARGUMENT}
	}
	secret := string(g.Secret)
	if secret != "" && g.ClientId == "" {
		return outcome{code: fsmpb.Code_INVALID_ARGUMENT}
	}
	r, ok := m.requests[reqKey(g.ClientId, g.RequestId, secret)]
	if !ok && secret != "" {
		// An unscoped record (older build) answers a scoped grant unless
		// its live lease is another client's.
		if u, found := m.requests[reqKey("", g.RequestId, "")]; found && (u.ended || m.leases[u.lease].client == g.ClientId) {
			r, ok = u, true
		}
	}
	if ok {
		if r.denied != fsmpb.Code_OK {
			return outcome{code: r.denied}
		}
		if r.ended {
			return outcome{code: fsmpb.Code_NOT_FOUND}
		}
		return outcome{lease: r.lease}
	}
	if !m.formed {
		return outcome{code: fsmpb.Code_NOT_FORMED}
	}
	known, anyValid, fits := false, false, false
	for _, l := range m.licenses {
		for _, f := range l.Features {
			if f.Name == g.Feature {
				known = true
				if m.valid(l, now) {
					anyValid = true
					fits = fits || f.Version >= g.Version
				}
			}
		}
	}
	// A refusal is remembered like an ended grant: one answer forever.
	deny := func(code fsmpb.Code) outcome {
		m.requests[reqKey(g.ClientId, g.RequestId, secret)] = &mRequest{ended: true, endedMs: now, denied: code}
		return outcome{code: code}
	}
	switch {
	case !known:
		return deny(fsmpb.Code_UNKNOWN_FEATURE)
	case !anyValid:
		return deny(fsmpb.Code_LICENSE_EXPIRED)
	case !fits:
		return deny(fsmpb.Code_VERSION_TOO_NEW)
	}
	count := max(g.Count, 1)
	// Hall's condition at every threshold the new lease touches.
	for t := uint32(0); t <= g.Version; t++ {
		if m.demand(g.Feature, t)+uint64(count) > m.supply(g.Feature, t, now) {
			return deny(fsmpb.Code_NO_SEAT)
		}
	}
	ttl := g.TtlMs
	switch {
	case ttl == 0:
		ttl = 30000
	case ttl < 1000:
		ttl = 1000
	case ttl > 3600000:
		ttl = 3600000
	}
	id := m.next
	m.next++
	m.leases[id] = &mLease{id: id, req: g.RequestId, feature: g.Feature, version: g.Version, count: count,
		expires: now + ttl, renewed: now, ttl: ttl, client: g.ClientId, secret: secret}
	m.requests[reqKey(g.ClientId, g.RequestId, secret)] = &mRequest{lease: id}
	return outcome{lease: id}
}

// owned: the i-th secret is the lease's, or the lease has none.
func (l *mLease) owned(secrets [][]byte, i int) bool {
	given := ""
	if i < len(secrets) {
		given = string(secrets[i])
	}
	return l.secret == "" || l.secret == given
}

func (m *model) renew(ids []uint64, secrets [][]byte, now int64) outcome {
	var out outcome
	for i, id := range ids {
		l, ok := m.leases[id]
		if !ok {
			out.leases = append(out.leases, fsmpb.Code_NOT_FOUND)
			continue
		}
		if !l.owned(secrets, i) {
			out.leases = append(out.leases, fsmpb.Code_WRONG_LEASE_SECRET)
			continue
		}
		l.renewed, l.expires = now, now+l.ttl
		out.leases = append(out.leases, fsmpb.Code_OK)
	}
	return out
}

func (m *model) end(l *mLease, now int64) {
	delete(m.leases, l.id)
	r := m.requests[reqKey(l.client, l.req, l.secret)]
	r.ended, r.endedMs = true, now
}

// release frees leases; force (an administrator's) needs no secret.
func (m *model) release(ids []uint64, secrets [][]byte, force bool, now int64) outcome {
	var out outcome
	for i, id := range ids {
		l, ok := m.leases[id]
		if !ok {
			out.leases = append(out.leases, fsmpb.Code_NOT_FOUND)
			continue
		}
		if !force && !l.owned(secrets, i) {
			out.leases = append(out.leases, fsmpb.Code_WRONG_LEASE_SECRET)
			continue
		}
		m.end(l, now)
		out.leases = append(out.leases, fsmpb.Code_OK)
	}
	return out
}

func (m *model) expire(now int64) outcome {
	var out outcome
	for _, id := range m.sortedLeaseIDs() {
		if l := m.leases[id]; l.expires < now {
			m.end(l, now)
			out.ids = append(out.ids, id)
		}
	}
	for id, r := range m.requests {
		if r.ended && now-r.endedMs > 600000 {
			delete(m.requests, id)
		}
	}
	return out
}

func (m *model) rebase(now int64) outcome {
	for _, l := range m.leases {
		l.expires = now + l.ttl
	}
	return outcome{}
}

// hasExpired is what an ExpireLeases at now would change.
func (m *model) hasExpired(now int64) bool {
	for _, l := range m.leases {
		if l.expires < now {
			return true
		}
	}
	for _, r := range m.requests {
		if r.ended && now-r.endedMs > 600000 {
			return true
		}
	}
	return false
}

func (m *model) sortedLeaseIDs() []uint64 {
	var ids []uint64
	for id := range m.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// apply runs one command on the model and returns one outcome per op (one
// for a non-batch command).
func (m *model) apply(cmd *fsmpb.Command, index uint64) []outcome {
	now := cmd.NowMs
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_FormCluster:
		return []outcome{m.form(c.FormCluster)}
	case *fsmpb.Command_EnrollLicense:
		return []outcome{m.enroll(c.EnrollLicense.License, now)}
	case *fsmpb.Command_RemoveLicense:
		return []outcome{m.remove(c.RemoveLicense.Serial)}
	case *fsmpb.Command_OpenSession:
		// The generator opens a session only on a formed cluster, when
		// its previous one is no longer live.
		return []outcome{{}}
	case *fsmpb.Command_ExpireLeases:
		return []outcome{m.expire(now)}
	case *fsmpb.Command_RebaseLeases:
		return []outcome{m.rebase(now)}
	case *fsmpb.Command_Batch:
		var out []outcome
		for _, op := range c.Batch.Ops {
			switch o := op.Op.(type) {
			case *fsmpb.Op_Grant:
				out = append(out, m.grant(o.Grant, now, index))
			case *fsmpb.Op_Renew:
				out = append(out, m.renew(o.Renew.LeaseIds, o.Renew.Secrets, now))
			case *fsmpb.Op_Release:
				out = append(out, m.release(o.Release.LeaseIds, o.Release.Secrets, false, now))
			}
		}
		return out
	}
	panic("model: unknown command")
}

// outcomesOf turns an FSM result into outcomes comparable with the model's.
func outcomesOf(cmd *fsmpb.Command, res any) []outcome {
	one := func(r *fsmpb.OpResult) outcome {
		o := outcome{code: r.Code, lease: r.Lease.GetId()}
		for _, lr := range r.Leases {
			if cmd.GetExpireLeases() != nil {
				o.ids = append(o.ids, lr.LeaseId)
			} else {
				o.leases = append(o.leases, lr.Code)
			}
		}
		return o
	}
	switch r := res.(type) {
	case *fsmpb.BatchResult:
		var out []outcome
		for _, x := range r.Results {
			out = append(out, one(x))
		}
		return out
	case *fsmpb.OpResult:
		return []outcome{one(r)}
	}
	panic("unexpected result type")
}
