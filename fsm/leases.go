package fsm

import (
	"cmp"
	"container/heap"
	"crypto/subtle"
	"slices"
	"strconv"

	"github.com/triadlm/triad/proto/fsmpb"
)

const (
	defaultTTLMs = 30_000
	minTTLMs     = 1_000
	maxTTLMs     = 3_600_000
	// requestMemoryMs is how long a request id is remembered after its lease
	// ended, so that a late retry gets "has ended" instead of a new seat.
	requestMemoryMs = 600_000
)

// applyBatch applies checkout/renew/release ops in order; each sees the
// effect of the ones before it.
func (s *state) applyBatch(now int64, index uint64, b *fsmpb.Batch) *fsmpb.BatchResult {
	out := &fsmpb.BatchResult{Results: make([]*fsmpb.OpResult, 0, len(b.GetOps()))}
	for _, op := range b.GetOps() {
		var r *fsmpb.OpResult
		switch o := op.GetOp().(type) {
		case *fsmpb.Op_Grant:
			r = s.applyGrant(now, index, o.Grant)
		case *fsmpb.Op_Renew:
			r = s.applyRenew(now, o.Renew)
		case *fsmpb.Op_Release:
			r = s.applyRelease(now, o.Release)
		case *fsmpb.Op_Borrow:
			r = s.applyBorrow(now, index, o.Borrow)
		case *fsmpb.Op_AdminRelease:
			r = s.applyAdminRelease(now, o.AdminRelease)
		case *fsmpb.Op_Dequeue:
			r = s.applyDequeue(now, o.Dequeue)
		default:
			// Unlike an undecodable entry, one empty op in a batch does
			// not stop the member: it is refused on its own.
			r = result(fsmpb.Code_INVALID_ARGUMENT, "empty op in batch")
		}
		out.Results = append(out.Results, r)
		// A seat freed by this op goes to a waiter before the next op
		// of the batch can take it.
		s.serveQueues(now, index)
	}
	return out
}

func clampTTL(ttl int64) int64 {
	if ttl == 0 {
		return defaultTTLMs
	}
	return min(max(ttl, minTTLMs), maxTTLMs)
}

// applyGrant decides one checkout against the capacity of the licenses
// valid at now.
func (s *state) applyGrant(now int64, index uint64, g *fsmpb.Grant) *fsmpb.OpResult {
	return s.grant(now, index, g, 0)
}

// grant decides a checkout, or a borrow for borrowMs when > 0.
func (s *state) grant(now int64, index uint64, g *fsmpb.Grant, borrowMs int64) *fsmpb.OpResult {
	if g.GetRequestId() == "" || g.GetFeature() == "" {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a checkout needs a request id and a feature name")
	}
	// A grant with a secret (every grant of this build: the leader stamps
	// one) has its request id scoped by its client id, which it must have.
	if len(g.GetSecret()) > 0 && g.GetClientId() == "" {
		return result(fsmpb.Code_INVALID_ARGUMENT, "a checkout needs a client id: request ids are scoped by it")
	}
	// A retry of a request that already committed gets what the first try
	// got, never a second seat.
	if k, rec, ok := s.earlierRequest(g); ok {
		if rec.LeaseId == 0 && rec.DeniedCode != fsmpb.Code_OK {
			// Refused once, refused forever: a late copy of the request
			// (a paused member's buffered forward) must not take a seat
			// its client was told it did not get.
			return &fsmpb.OpResult{Code: rec.DeniedCode, Message: s.denied[k]}
		}
		if e, live := s.leases[rec.LeaseId]; live && !e.Lingering {
			return &fsmpb.OpResult{Code: fsmpb.Code_OK,
				Message: "request " + g.RequestId + " was already granted",
				Lease:   s.answerLease(e)}
		}
		return result(fsmpb.Code_NOT_FOUND, "request %s already produced lease %d, which has ended", g.RequestId, rec.LeaseId)
	}
	if e := s.queue.byKey[grantKey(g)]; e != nil {
		return s.renewQueued(now, e) // a retry of a queued request keeps its place
	}
	if s.cluster == nil {
		return result(fsmpb.Code_NOT_FORMED, "the cluster is not formed yet")
	}
	if borrowMs > 0 && s.knownFeature(g.Feature) {
		if res := borrowAllowed(g.Feature, borrowMs, s.terms(g.Feature, now)); res != nil {
			return s.rememberDenial(now, g, res)
		}
	}
	// A package's checkout (or a component's) is admitted by the suite's
	// seat (packages.go); a lingering package lease keeps that seat for its
	// group, so the same user and host share it without a take-back.
	pkg := s.packageFor(g.Feature)
	var res *fsmpb.OpResult
	var t terms
	var back []uint64
	switch {
	case pkg != "" && borrowMs > 0:
		res = result(fsmpb.Code_BORROW_NOT_ALLOWED, "%s cannot be borrowed: borrowing a package or its components is not supported", g.Feature)
	case pkg != "":
		res, t = s.admitSuite(now, g, pkg)
	default:
		res, t, back = s.admitTakingBack(now, g, uint64(max(g.Count, 1)))
	}
	if res == nil && len(back) == 0 {
		// Earlier waiters of the feature are served first (queue.go). A
		// take-back of a lingering seat needs no line: that seat is its
		// user's and host's, never a waiter's.
		res = s.lineHeld(now, g)
	}
	if res != nil && res.Code == fsmpb.Code_NO_SEAT && s.allFormat4() {
		// A request no freed seat can cure gets the definite answer.
		if never := s.neverFitsResult(now, g); never != nil {
			res = never
		}
	}
	if res != nil {
		if g.GetQueueWaitMs() > 0 && pkg == "" {
			return s.enqueue(now, index, g, borrowMs, res)
		}
		if g.GetQueueWaitMs() > 0 && res.Code == fsmpb.Code_NO_SEAT {
			res = result(res.Code, "%s; a package and its components cannot be waited for in a queue: check out again later", res.Message)
		}
		return s.rememberDenial(now, g, res)
	}
	out := s.newLease(now, index, g, t, borrowMs)
	if len(back) > 0 {
		out.Message = "took back lingering lease(s) " + joinIDs(back)
	}
	return out
}

// newLease creates the lease of an admitted grant.
func (s *state) newLease(now int64, index uint64, g *fsmpb.Grant, t terms, borrowMs int64) *fsmpb.OpResult {
	ttl := clampTTL(g.TtlMs)
	if borrowMs > 0 {
		ttl = borrowMs
	}
	in := &s.strs
	in.trim(8 * len(s.leases))
	l := &lease{
		Id:           s.nextLeaseID,
		RequestId:    g.RequestId,
		Feature:      in.get(g.Feature),
		Version:      g.Version,
		VersionText:  in.get(g.VersionText),
		Count:        max(g.Count, 1),
		User:         in.get(g.User),
		Host:         in.get(g.Host),
		Pid:          g.Pid,
		ClientId:     in.get(g.ClientId),
		GrantedMs:    now,
		RenewedMs:    now,
		ExpiresMs:    now + ttl,
		TtlMs:        ttl,
		GrantedIndex: index,
		ViaMember:    in.get(g.ViaMember),
		Borrowed:     borrowMs > 0,
		NamedUser:    t.model == modelNamedUser,
		Secret:       string(g.Secret),
		Package:      in.get(s.packageFor(g.Feature)),
	}
	if t.model == modelCountdown {
		l.AccountedMs = now
	}
	if l.NamedUser {
		s.tieSeat(now, l)
	}
	s.nextLeaseID++
	s.leases[l.Id] = l
	heap.Push(&s.expiry, l)
	s.addLeaseUse(l)
	s.histSeatsChanged(now, l.Feature)
	k := requestKeyOf(l)
	s.requests.set(k, requestRecord{LeaseId: l.Id})
	s.emitLease(now, EventCheckout, "", l)
	return &fsmpb.OpResult{Code: fsmpb.Code_OK, Lease: s.answerLease(l)}
}

// rememberDenial records that g's request id was refused with res, so
// that the request id has one answer forever: a later Grant with the same
// id (a retry, or a stale copy forwarded after its client moved on) gets
// the same refusal and takes no seat. The record is pruned like an ended
// grant's, requestMemoryMs after the refusal.
func (s *state) rememberDenial(now int64, g *fsmpb.Grant, res *fsmpb.OpResult) *fsmpb.OpResult {
	s.emitDenial(now, g, res)
	s.histDenial(now, g, res.Code, res.Message)
	if !s.enforcing() {
		return res // older builds forgot refusals: their entries replay as written
	}
	k := grantKey(g)
	s.requests.set(k, requestRecord{EndedMs: now, DeniedCode: res.Code})
	s.setDenied(k, res.Message)
	s.noteEnded(now)
	return res
}

// requestKey identifies a request record: a request id is scoped by the
// client id of the grant that carried it. Records of grants without a
// secret (written before lease secrets) have an empty client: unscoped.
type requestKey struct {
	client, request string
}

func (k requestKey) less(o requestKey) int {
	return cmp.Or(cmp.Compare(k.client, o.client), cmp.Compare(k.request, o.request))
}

// requestKeyOf is the key of the record of the grant that produced l.
func requestKeyOf(l *lease) requestKey {
	if l.Secret == "" {
		return requestKey{request: l.RequestId}
	}
	return requestKey{client: l.ClientId, request: l.RequestId}
}

// grantKey is the request key of g (see requestKeyOf).
func grantKey(g *fsmpb.Grant) requestKey {
	if len(g.GetSecret()) == 0 {
		return requestKey{request: g.GetRequestId()}
	}
	return requestKey{client: g.GetClientId(), request: g.GetRequestId()}
}

// earlierRequest finds the record of an earlier grant of the same request:
// same client and request id. An unscoped record (from before lease
// secrets) also matches a scoped grant of the same request id unless its
// lease is live and belongs to another client: its holder's retry still
// resolves to it, and nobody else ever gets it.
func (s *state) earlierRequest(g *fsmpb.Grant) (requestKey, requestRecord, bool) {
	unscoped := requestKey{request: g.RequestId}
	if len(g.GetSecret()) == 0 {
		rec, ok := s.requests.get(unscoped)
		return unscoped, rec, ok
	}
	scoped := requestKey{client: g.ClientId, request: g.RequestId}
	if rec, ok := s.requests.get(scoped); ok {
		return scoped, rec, true
	}
	rec, ok := s.requests.get(unscoped)
	if !ok {
		return requestKey{}, requestRecord{}, false
	}
	if e, live := s.leases[rec.LeaseId]; live && e.ClientId != g.ClientId {
		return requestKey{}, requestRecord{}, false
	}
	return unscoped, rec, true
}

// setDenied keeps the message of the refusal recorded under k.
func (s *state) setDenied(k requestKey, msg string) {
	if msg == "" {
		delete(s.denied, k)
		return
	}
	s.denied[k] = msg
}

// remembered reports whether a record of request k is kept.
func (s *state) remembered(k requestKey) bool {
	_, ok := s.requests.get(k)
	return ok
}

// ownedBy reports whether secret is l's secret, in constant time. A lease
// granted before lease secrets has none and needs none.
func ownedBy(l *lease, secret []byte) bool {
	if len(l.Secret) == 0 {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(l.Secret), secret) == 1
}

// secretAt is the i-th secret of a Renew or Release (empty when missing).
func secretAt(secrets [][]byte, i int) []byte {
	if i < len(secrets) {
		return secrets[i]
	}
	return nil
}

func wrongSecret(id uint64) *fsmpb.LeaseResult {
	return &fsmpb.LeaseResult{LeaseId: id, Code: fsmpb.Code_WRONG_LEASE_SECRET,
		Message: "lease " + strconv.FormatUint(id, 10) + ": wrong lease secret"}
}

// applyRenew restarts the TTL of each listed live lease.
func (s *state) applyRenew(now int64, r *fsmpb.Renew) *fsmpb.OpResult {
	out := &fsmpb.OpResult{Leases: make([]*fsmpb.LeaseResult, 0, len(r.GetLeaseIds()))}
	for i, id := range r.GetLeaseIds() {
		e, ok := s.leases[id]
		if !ok {
			out.Leases = append(out.Leases, s.endedNotFound(id))
			continue
		}
		if !ownedBy(e, secretAt(r.Secrets, i)) {
			out.Leases = append(out.Leases, wrongSecret(id))
			continue
		}
		if e.Lingering {
			out.Leases = append(out.Leases, lingeringNotFound(e))
			continue
		}
		if i < len(r.IdleMs) {
			s.setIdle(now, e, r.IdleMs[i])
		} else {
			s.setIdle(now, e, 0)
		}
		s.touchSeat(now, e)
		if e.AccountedMs != 0 {
			s.account(now, e)
			if t := s.terms(e.Feature, now); s.countdownUsed(e.Feature, now) >= t.poolMs {
				heap.Remove(&s.expiry, int(e.heapIdx))
				s.endLease(now, e)
				s.emitLease(now, EventExpiry, "countdown pool used up", e)
				out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: id, Code: fsmpb.Code_POOL_EXHAUSTED,
					Message: "the countdown pool of " + e.Feature + " is used up: lease ended"})
				continue
			}
		}
		e.RenewedMs = now
		if !e.Borrowed { // a borrow ends when it was agreed to, renewed or not
			e.ExpiresMs = now + e.TtlMs
			heap.Fix(&s.expiry, int(e.heapIdx))
		}
		out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: id, ExpiresMs: e.ExpiresMs, TtlMs: e.TtlMs})
	}
	return out
}

// applyRelease frees each listed live lease whose secret is given.
// A seat of a feature with a linger stays reserved for its user and host
// (idlelinger.go).
func (s *state) applyRelease(now int64, r *fsmpb.Release) *fsmpb.OpResult {
	return s.release(now, r.GetLeaseIds(), byHolder, func(i int, l *lease) bool { return ownedBy(l, secretAt(r.Secrets, i)) })
}

// releaser is who ends leases through release: the holder (its Release)
// or an administrator (usage release), who also frees lingering seats.
type releaser int

const (
	byHolder releaser = iota
	byAdmin
)

// why is the reason the lease events give.
func (b releaser) why() string {
	if b == byAdmin {
		return "force-released"
	}
	return "released"
}

// release ends the listed leases allowed says may go. By the holder a
// lease lingers if its feature says so, and a lingering one is already
// released. An administrator's release ends lingering seats too, at once.
func (s *state) release(now int64, ids []uint64, by releaser, allowed func(i int, l *lease) bool) *fsmpb.OpResult {
	admin, why := by == byAdmin, by.why()
	out := &fsmpb.OpResult{Leases: make([]*fsmpb.LeaseResult, 0, len(ids))}
	for i, id := range ids {
		e, ok := s.leases[id]
		if !ok {
			out.Leases = append(out.Leases, s.endedNotFound(id))
			continue
		}
		if !allowed(i, e) {
			out.Leases = append(out.Leases, wrongSecret(id))
			continue
		}
		if e.Lingering && !admin {
			out.Leases = append(out.Leases, lingeringNotFound(e))
			continue
		}
		heap.Remove(&s.expiry, int(e.heapIdx))
		if ms := s.mayLinger(now, e); ms > 0 && !admin {
			s.startLinger(now, ms, e)
			s.emitLease(now, EventRelease, why+"; the seat lingers", e)
			out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: id, ExpiresMs: e.ExpiresMs,
				Message: "released; the seat lingers for " + e.User + "@" + e.Host + " until " + formatTime(e.ExpiresMs)})
			continue
		}
		s.endLease(now, e)
		s.emitLease(now, EventRelease, why, e)
		out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: id})
	}
	return out
}

func leaseNotFound(id uint64) *fsmpb.LeaseResult {
	return &fsmpb.LeaseResult{LeaseId: id, Code: fsmpb.Code_NOT_FOUND,
		Message: "lease " + strconv.FormatUint(id, 10) + " not found: it expired or was released"}
}

// endLease removes a lease already taken out of the expiry heap.
func (s *state) endLease(now int64, l *lease) {
	s.dropLeaseUse(now, l)
	s.forgetLease(now, l)
}

// forgetLease is endLease for a lease whose use is already dropped.
func (s *state) forgetLease(now int64, l *lease) {
	delete(s.leases, l.Id)
	s.unindexLease(l)
	s.histSeatsChanged(now, l.Feature)
	s.histLeaseEnded(now, l)
	k := requestKeyOf(l)
	if rec, ok := s.requests.get(k); ok && rec.LeaseId == l.Id {
		rec.EndedMs = now
		s.requests.set(k, rec)
		s.noteEnded(now)
	}
}

// applyExpireLeases ends every lease whose expiry is before now, and
// forgets request ids whose lease ended more than requestMemoryMs ago.
func (s *state) applyExpireLeases(now int64) *fsmpb.OpResult {
	var expired []*lease
	for len(s.expiry) > 0 && s.expiry[0].ExpiresMs < now {
		e := heap.Pop(&s.expiry).(*lease)
		expired = append(expired, e)
	}
	slices.SortFunc(expired, func(a, b *lease) int { return cmp.Compare(a.Id, b.Id) })
	out := &fsmpb.OpResult{Leases: make([]*fsmpb.LeaseResult, 0, len(expired))}
	for _, l := range expired {
		if ms := s.mayLinger(now, l); ms > 0 {
			// Its holder stopped heartbeating: the seat lingers for the
			// same user and host as after a release.
			expiresMs := l.ExpiresMs
			s.startLinger(now, ms, l)
			s.emitLease(now, EventExpiry, "expired; the seat lingers", l)
			out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: l.Id, Message: "expired; lingering", ExpiresMs: expiresMs, TtlMs: l.TtlMs})
			continue
		}
		msg := "expired"
		if l.Lingering {
			msg = "linger ended"
		}
		s.endLease(now, l)
		why := "expired"
		switch {
		case l.Lingering:
			why = "linger ended"
		case l.Borrowed:
			why = "borrow ended"
		}
		s.emitLease(now, EventExpiry, why, l)
		out.Leases = append(out.Leases, &fsmpb.LeaseResult{LeaseId: l.Id, Message: msg, ExpiresMs: l.ExpiresMs, TtlMs: l.TtlMs})
	}
	out.Leases = append(out.Leases, s.expireIdle(now)...)
	s.expireQueue(now)
	s.pruneRequests(now)
	s.histTrim(now)
	return out
}

func (s *state) pruneRequests(now int64) {
	if s.endedRequests == 0 || s.minEndedMs >= now-requestMemoryMs {
		return
	}
	s.endedRequests = 0
	s.requests.update(func(rec *requestRecord) bool {
		if _, live := s.leases[rec.LeaseId]; live {
			return false
		}
		if rec.EndedMs < now-requestMemoryMs {
			return true
		}
		s.noteEnded(rec.EndedMs)
		return false
	}, func(rec requestRecord, key func() requestKey) {
		if rec.DeniedCode != fsmpb.Code_OK {
			delete(s.denied, key())
		}
		if rec.IdleTimeout {
			delete(s.idl.idleEnded, rec.LeaseId)
		}
	})
}

// applyRebaseLeases restarts every live lease's TTL from now: a new leader
// measures time with its own clock and must not expire leases that the old
// leader's clock still considered live. With memoryFrom (the last
// committed now the new leader found; 0 in older logs, which replay as
// before) the time from it to now does not count towards the memory of
// ended and refused request ids either: a leader whose clock is an hour
// ahead would otherwise make the cluster forget, at once, answers it must
// keep for requestMemoryMs (a refused request granted on retry, a retry
// of an ended grant given a new seat). Records that ended since
// memoryFrom (commands of the new leader before this one) move too: they
// are remembered a little longer, never shorter.
func (s *state) applyRebaseLeases(now, memoryFrom int64) *fsmpb.OpResult {
	if d := now - memoryFrom; memoryFrom > 0 && d > 0 && s.endedRequests > 0 {
		s.requests.update(func(rec *requestRecord) bool {
			if _, live := s.leases[rec.LeaseId]; !live {
				rec.EndedMs += d
			}
			return false
		}, nil)
		s.minEndedMs += d
	}
	for _, e := range s.expiry {
		if e.Borrowed {
			continue // offline: its end was agreed in wall-clock time
		}
		if e.Lingering {
			// Its linger restarts from the new leader's clock, like a TTL.
			e.ExpiresMs = now + e.LingerMs
			continue
		}
		if d := now - memoryFrom; memoryFrom > 0 && d > 0 && e.IdleSinceMs > 0 {
			// The time between leaders does not count as idle time.
			e.IdleSinceMs += d
		}
		s.account(now, e)
		if e.AccountedMs != 0 {
			s.setAccounted(e, now) // a clock behind: start counting from it
		}
		e.ExpiresMs = now + e.TtlMs
	}
	heap.Init(&s.expiry)
	s.rebaseQueue(now, memoryFrom)
	return result(fsmpb.Code_OK, "%d lease(s) rebased", len(s.expiry))
}

// expiryHeap is a min-heap of live leases by expires_ms. Ties are broken by
// id so that even its internal order is a function of the log.
type expiryHeap []*lease

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.ExpiresMs != b.ExpiresMs {
		return a.ExpiresMs < b.ExpiresMs
	}
	return a.Id < b.Id
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}
func (h *expiryHeap) Push(x any) {
	e := x.(*lease)
	e.heapIdx = int32(len(*h))
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
