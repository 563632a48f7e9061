package fsm

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Queued checkouts (issue 13, point 1).
//
// A Grant with queue_wait_ms > 0 that cannot be granted now, for a reason
// a freed seat can cure, joins its feature's queue instead of being
// refused. Each feature has ONE first-in first-out queue, whatever the
// versions asked (a seat of version V serves every version up to V, so
// waiters of different versions compete for the same seats). Apply serves
// the queue whenever a seat may have freed: a lease ended (release,
// expiry, force release, a countdown pool ending it), a named seat
// untied, a license enrolled, removed, or becoming valid, rules set, a
// member replaced, a waiter leaving. Serving walks the queue in order and
// grants each waiter that admission accepts, with the freeing command's
// index as the lease's fencing index, so every member grants the same
// waiters the same leases.
//
// Holding the line (as FlexNet and RLM do): a waiter refused for want of
// seats (NO_SEAT; e.g. it needs 3 seats and 1 is free) blocks every later
// waiter of the feature and every new checkout of it, so a large request
// is not starved by a stream of small ones. A waiter refused by a rule
// that depends on the seats in use (MAX on its subject, seats RESERVEd
// for others) waits without blocking the others: the seats it cannot
// take are not its to take, and others may take them.
//
// Refused at once, never queued: EXCLUDE and INCLUDE rules, an unknown
// feature, a version above every license, a license expired, a countdown
// pool used up, a request for more seats than the feature's licenses
// hold (or than a MAX rule on its subject allows): no freed seat cures
// those. A waiter whose request becomes such (its license removed, a rule
// set) leaves the queue with that refusal.
//
// Waiters are renewed like leases: a retry of the same request (same
// client and request id) renews its place and answers its position; one
// not renewed within its TTL leaves the queue (its client is gone), and
// one whose maximum wait passes leaves it with "waited N, no seat". Both
// are remembered like refusals (rememberDenial): the request id has that
// answer from then on. A granted waiter's retry gets its lease (the
// request record) like any retried checkout.

const (
	// maxQueueWaitMs caps a queued request's maximum wait (7 days).
	maxQueueWaitMs = 7 * 24 * 3600 * 1000
	// maxQueueLen caps a feature's queue, so that a runaway client cannot
	// fill the replicated state with waiters.
	maxQueueLen = 10_000
)

type queueState struct {
	// byFeature holds each feature's waiters, in queue order; no empty
	// slices.
	byFeature map[string][]*fsmpb.QueueEntry
	// byKey finds a waiter by its request key (derived).
	byKey map[requestKey]*fsmpb.QueueEntry
	// dirty lists the features whose queue must be served before the
	// command (or batch op) ends; dirtyAll serves every queue (licenses
	// or rules changed). Derived, empty between commands.
	dirty    map[string]bool
	dirtyAll bool
}

func newQueueState() queueState {
	return queueState{byFeature: map[string][]*fsmpb.QueueEntry{}, byKey: map[requestKey]*fsmpb.QueueEntry{}, dirty: map[string]bool{}}
}

// markQueue notes that a seat of feature may have freed.
func (s *state) markQueue(feature string) {
	if _, ok := s.queue.byFeature[feature]; ok {
		s.queue.dirty[feature] = true
	}
}

// markAllQueues notes that capacity or rules may have changed.
func (s *state) markAllQueues() {
	if len(s.queue.byFeature) > 0 {
		s.queue.dirtyAll = true
	}
}

// enqueue puts g in its feature's queue, or refuses it at once when res
// (the refusal it got now) is one that no freed seat cures.
func (s *state) enqueue(now int64, index uint64, g *fsmpb.Grant, borrowMs int64, res *fsmpb.OpResult) *fsmpb.OpResult {
	switch {
	case borrowMs > 0:
		return result(fsmpb.Code_INVALID_ARGUMENT, "a borrow cannot wait in the queue: check out with a queue, then borrow")
	case !waitable(res):
		return s.rememberDenial(now, g, res)
	}
	if never := s.neverFits(now, g); never != nil {
		return s.rememberDenial(now, g, never)
	}
	q := s.queue.byFeature[g.Feature]
	if len(q) >= maxQueueLen {
		return s.rememberDenial(now, g, result(fsmpb.Code_NO_SEAT,
			"no seat left for %s and its queue is full (%d waiting): try again later", g.Feature, len(q)))
	}
	ttl := clampTTL(g.TtlMs)
	e := &fsmpb.QueueEntry{
		Grant:         proto.Clone(g).(*fsmpb.Grant),
		EnqueuedMs:    now,
		DeadlineMs:    now + min(g.QueueWaitMs, maxQueueWaitMs),
		RenewedMs:     now,
		ExpiresMs:     now + ttl,
		TtlMs:         ttl,
		EnqueuedIndex: index,
	}
	s.queue.byFeature[g.Feature] = append(q, e)
	s.queue.byKey[grantKey(g)] = e
	return s.queuedResult(e, len(q)+1, res)
}

// waitable reports whether a refusal may be cured by a seat freeing.
func waitable(res *fsmpb.OpResult) bool {
	return res.Code == fsmpb.Code_NO_SEAT || res.Code == fsmpb.Code_DENIED_BY_RULE
}

// neverFits refuses a request that no freed seat can ever satisfy: one its
// EXCLUDE/INCLUDE rules refuse, one for more seats than the feature's
// valid licenses hold (overdraft included), or than a MAX rule on its
// subject allows.
func (s *state) neverFits(now int64, g *fsmpb.Grant) *fsmpb.OpResult {
	if res := s.checkAccess(g); res != nil {
		return res
	}
	n := s.seatsAsked(now, g)
	if res := s.neverFitsResult(now, g); res != nil {
		return res
	}
	if s.model.rules != nil {
		for _, i := range s.model.ri.byFeature[g.Feature] {
			r := s.model.rules.Rules[i]
			if r.Kind == "max" && uint64(r.Count) < n && s.matches(r, g.User, g.Host) {
				return result(fsmpb.Code_DENIED_BY_RULE, "denied by rule %s: at most %d seat(s) of %s, and %d can never fit", r.Name, r.Count, g.Feature, n)
			}
		}
	}
	return nil
}

// lineHeld refuses a new checkout of g's feature (queued or not) that
// would take a seat before a waiter holding the line: one refused for
// want of seats. Waiters refused only by MAX or RESERVE do not hold it.
func (s *state) lineHeld(now int64, g *fsmpb.Grant) *fsmpb.OpResult {
	q := s.queue.byFeature[g.Feature]
	if len(q) == 0 {
		return nil
	}
	if _, tied := s.model.named[g.Feature][g.User]; tied && s.terms(g.Feature, now).model == modelNamedUser {
		return nil // a tied user's lease shares its seat: it takes none
	}
	for i, e := range q {
		if res, _ := s.admit(now, e.Grant, uint64(max(e.Grant.Count, 1))); res != nil && res.Code == fsmpb.Code_NO_SEAT {
			return result(fsmpb.Code_NO_SEAT, "no seat left for %s v %d: %d earlier request(s) wait in its queue and are served first",
				g.Feature, g.Version, i+1)
		}
	}
	return nil
}

func (s *state) queuedResult(e *fsmpb.QueueEntry, pos int, why *fsmpb.OpResult) *fsmpb.OpResult {
	g := e.Grant
	n := len(s.queue.byFeature[g.Feature])
	msg := fmt.Sprintf("queued for %s v %d: position %d of %d, waiting at most until %s",
		g.Feature, g.Version, pos, n, formatTime(e.DeadlineMs))
	if why != nil {
		msg += " (" + why.Message + ")"
	}
	return &fsmpb.OpResult{Code: fsmpb.Code_QUEUED, Message: msg,
		QueuePosition: uint32(pos), QueueLength: uint32(n), QueueDeadlineMs: e.DeadlineMs}
}

// renewQueued renews a waiter's place (a retry of its checkout).
func (s *state) renewQueued(now int64, e *fsmpb.QueueEntry) *fsmpb.OpResult {
	e.RenewedMs = max(e.RenewedMs, now)
	e.ExpiresMs = max(e.ExpiresMs, now+e.TtlMs)
	q := s.queue.byFeature[e.Grant.Feature]
	return s.queuedResult(e, slices.Index(q, e)+1, nil)
}

// leaveQueue takes waiter i of feature out of its queue and remembers
// res as its request's answer.
func (s *state) leaveQueue(now int64, feature string, e *fsmpb.QueueEntry, res *fsmpb.OpResult) {
	s.dropWaiter(feature, e)
	s.rememberDenial(now, e.Grant, res)
}

func (s *state) dropWaiter(feature string, e *fsmpb.QueueEntry) {
	q := slices.DeleteFunc(s.queue.byFeature[feature], func(x *fsmpb.QueueEntry) bool { return x == e })
	delete(s.queue.byKey, grantKey(e.Grant))
	if len(q) == 0 {
		delete(s.queue.byFeature, feature)
		delete(s.queue.dirty, feature)
		return
	}
	s.queue.byFeature[feature] = q
	s.queue.dirty[feature] = true // the line may move
}

// serveQueues serves the queues marked dirty, in feature order.
func (s *state) serveQueues(now int64, index uint64) {
	if len(s.queue.byFeature) == 0 {
		s.queue.dirtyAll = false
		clear(s.queue.dirty)
		return
	}
	for len(s.queue.dirty) > 0 || s.queue.dirtyAll {
		var features []string
		if s.queue.dirtyAll {
			features = sortedKeys(s.queue.byFeature)
		} else {
			features = sortedKeys(s.queue.dirty)
		}
		s.queue.dirtyAll = false
		clear(s.queue.dirty)
		for _, f := range features {
			s.serveQueue(now, index, f)
		}
		// Serving grants seats and drops waiters: a dropped waiter marks
		// its feature again (the line moved), so loop until quiet. Each
		// pass removes at least one waiter or ends.
	}
}

// serveQueue grants the waiters of feature that fit, in order, until one
// holds the line.
func (s *state) serveQueue(now int64, index uint64, feature string) {
	q := slices.Clone(s.queue.byFeature[feature])
	for _, e := range q {
		g := e.Grant
		res, t := s.admit(now, g, uint64(max(g.Count, 1)))
		switch {
		case res == nil:
			s.dropWaiter(feature, e)
			s.newLease(now, index, g, t, 0)
		case res.Code == fsmpb.Code_NO_SEAT:
			delete(s.queue.dirty, feature)
			return // it holds the line
		case !waitable(res):
			s.leaveQueue(now, feature, e, result(fsmpb.Code_QUEUE_LEFT, "left the queue of %s: %s", feature, res.Message))
		default:
			if never := s.neverFits(now, g); never != nil {
				s.leaveQueue(now, feature, e, result(fsmpb.Code_QUEUE_LEFT, "left the queue of %s: %s", feature, never.Message))
			}
		}
	}
	delete(s.queue.dirty, feature)
}

// expireQueue removes the waiters whose maximum wait passed or whose
// client stopped renewing them, in feature then queue order.
func (s *state) expireQueue(now int64) {
	for _, f := range sortedKeys(s.queue.byFeature) {
		for _, e := range slices.Clone(s.queue.byFeature[f]) {
			switch {
			case e.DeadlineMs < now:
				s.leaveQueue(now, f, e, result(fsmpb.Code_QUEUE_TIMEOUT, "waited %s in the queue of %s, no seat freed",
					time.Duration(now-e.EnqueuedMs)*time.Millisecond, f))
			case e.ExpiresMs < now:
				s.leaveQueue(now, f, e, result(fsmpb.Code_QUEUE_LEFT,
					"left the queue of %s: its client stopped renewing its place (not renewed for %s)",
					f, time.Duration(now-e.RenewedMs)*time.Millisecond))
			}
		}
	}
}

// queueExpired reports whether expireQueue at now would remove a waiter.
func (s *state) queueExpired(now int64) bool {
	for _, q := range s.queue.byFeature { // any order: a yes/no answer
		for _, e := range q {
			if e.DeadlineMs < now || e.ExpiresMs < now {
				return true
			}
		}
	}
	return false
}

// applyDequeue takes a waiter out of its queue at its client's request.
func (s *state) applyDequeue(now int64, d *fsmpb.Dequeue) *fsmpb.OpResult {
	if d.GetRequestId() == "" || d.GetClientId() == "" {
		return result(fsmpb.Code_INVALID_ARGUMENT, "leaving a queue needs the request id and client id of the queued checkout")
	}
	k := requestKey{client: d.ClientId, request: d.RequestId}
	e := s.queue.byKey[k]
	if e == nil {
		if rec, _ := s.requests.get(k); rec.LeaseId != 0 {
			r := result(fsmpb.Code_NOT_FOUND, "request %s is not queued: it was granted lease %d (release the lease)", d.RequestId, rec.LeaseId)
			r.Lease = &fsmpb.Lease{Id: rec.LeaseId}
			return r
		}
		return result(fsmpb.Code_NOT_FOUND, "request %s is not queued", d.RequestId)
	}
	f := e.Grant.Feature
	s.leaveQueue(now, f, e, result(fsmpb.Code_QUEUE_LEFT, "left the queue of %s: cancelled by its client", f))
	return result(fsmpb.Code_OK, "request %s left the queue of %s", d.RequestId, f)
}

// rebaseQueue moves the waiters' leader-time stamps with a new leader's
// clock, as applyRebaseLeases does for leases: the time from memoryFrom
// (the last committed now) to now does not count against a waiter's
// maximum wait, and every waiter gets a full TTL to renew its place from
// the new leader.
func (s *state) rebaseQueue(now, memoryFrom int64) {
	var d int64
	if memoryFrom > 0 {
		d = now - memoryFrom
	}
	for _, f := range sortedKeys(s.queue.byFeature) {
		for _, e := range s.queue.byFeature[f] {
			e.EnqueuedMs += d
			e.DeadlineMs += d
			e.RenewedMs += d
			e.ExpiresMs = now + e.TtlMs
		}
	}
}

// queueToSnapshot lists every waiter, by feature then queue order.
func (s *state) queueToSnapshot(snap *fsmpb.Snapshot) {
	for _, f := range sortedKeys(s.queue.byFeature) {
		snap.Queue = append(snap.Queue, s.queue.byFeature[f]...)
	}
}

func queueFromSnapshot(snap *fsmpb.Snapshot) (queueState, error) {
	q := newQueueState()
	for _, e := range snap.GetQueue() {
		g := e.GetGrant()
		if g.GetFeature() == "" || g.GetRequestId() == "" {
			return q, fmt.Errorf("fsm: snapshot holds a queued checkout without a feature or request id")
		}
		k := grantKey(g)
		if _, dup := q.byKey[k]; dup {
			return q, fmt.Errorf("fsm: snapshot holds queued request %q of client %q twice", g.RequestId, g.ClientId)
		}
		q.byKey[k] = e
		q.byFeature[g.Feature] = append(q.byFeature[g.Feature], e)
	}
	return q, nil
}

// QueuedCheckout is one waiter, as listings show it.
type QueuedCheckout struct {
	Position int // 1 = served next
	Entry    *fsmpb.QueueEntry
}

// Queue returns every waiter, by feature then queue order. The entries
// are copies without the lease secret.
func (f *FSM) Queue() []QueuedCheckout {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []QueuedCheckout
	for _, feature := range sortedKeys(f.s.queue.byFeature) {
		for i, e := range f.s.queue.byFeature[feature] {
			c := proto.Clone(e).(*fsmpb.QueueEntry)
			c.Grant.Secret = nil
			out = append(out, QueuedCheckout{Position: i + 1, Entry: c})
		}
	}
	return out
}

// QueueLengths returns the number of waiters per feature (features with
// none are absent).
func (f *FSM) QueueLengths() map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int, len(f.s.queue.byFeature))
	for feature, q := range f.s.queue.byFeature {
		out[feature] = len(q)
	}
	return out
}

func init() {
	// A Grant that may wait changes what Apply does (an older build would
	// refuse it instead of queueing it): it needs format 4, like the new
	// Dequeue op (opFormats).
	opFormatHooks = append(opFormatHooks, func(o *fsmpb.Op) (uint32, string) {
		if o.GetGrant().GetQueueWaitMs() != 0 || o.GetBorrow().GetGrant().GetQueueWaitMs() != 0 {
			return 4, "batch.grant.queue_wait_ms"
		}
		return 1, ""
	})
}
