package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// Errors of the write path. They are mapped to gRPC codes in one place
// (toStatus); every one of them means "retry, possibly elsewhere".
var (
	ErrNoLeader  = errors.New("no leader")
	ErrNotLeader = errors.New("this member is not the leader")
	errRetry     = errors.New("leader unreachable")
	// ErrNotReadyForReads: a new leader has not yet committed an entry of
	// its own term (its barrier), so its commit index may be behind what
	// the previous leader acknowledged.
	ErrNotReadyForReads = errors.New("the new leader is not yet ready for consistent reads")
)

const (
	// holdTimeout bounds how long a write waits for a leader (an election
	// normally takes 1–3 s).
	holdTimeout  = 8 * time.Second
	applyTimeout = 10 * time.Second
	// forwardedKey marks a request forwarded by a follower, so that the
	// receiver never forwards it again.
	forwardedKey = "triad-forwarded-by"
)

func (s *Server) isLeader() bool { return s.node.raft.State() == raft.Leader }

// leaderAddr returns the licensing address and name of the current leader,
// or empty strings when there is none.
func (s *Server) leaderAddr() (addr, name string) {
	_, id := s.node.raft.LeaderWithID()
	if id == "" {
		return "", ""
	}
	return s.memberAddr(string(id)), string(id)
}

// leaderPeerAddr returns the failover (Peer) address of the current
// leader, where forwarded writes and read-index questions go.
func (s *Server) leaderPeerAddr() string {
	addr, _ := s.node.raft.LeaderWithID()
	return string(addr)
}

func retryable(err error) bool {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, ErrNoLeader), errors.Is(err, ErrNotLeader), errors.Is(err, errRetry),
		errors.Is(err, ErrNotReadyForReads):
		return true
	}
	return false
}

// route runs a write on the leader: locally when this member leads,
// through the leader otherwise. A forwarded request is never forwarded
// again. Every write is safe to retry (checkouts carry request ids the FSM
// deduplicates; renew and release are idempotent), so on a leader change
// the write is retried until holdTimeout.
func (s *Server) route(ctx context.Context, forwarded bool, local, remote func(context.Context) error) error {
	deadline := time.Now().Add(holdTimeout)
	if d, ok := ctx.Deadline(); ok && d.Add(-50*time.Millisecond).Before(deadline) {
		deadline = d.Add(-50 * time.Millisecond)
	}
	backoff := 10 * time.Millisecond
	for {
		if f := s.diskFault(); f != nil {
			return f.status()
		}
		var err error
		switch {
		case s.isLeader():
			err = local(ctx)
			if f := s.diskFault(); err != nil && f != nil {
				// This member's disk failed the write: it is fenced; the
				// caller retries on another member.
				return f.status()
			}
		case forwarded:
			return ErrNotLeader
		default:
			if addr, _ := s.leaderAddr(); addr != "" {
				err = remote(ctx)
			} else {
				err = ErrNoLeader
			}
		}
		if err == nil || !retryable(err) || s.ctx.Err() != nil {
			return err
		}
		if time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// submitOps runs this member's own callers' lease operations through the
// batchers, each op with ctx's deadline. An op dropped for its deadline
// (never proposed) fails the call with context.DeadlineExceeded.
func (s *Server) submitOps(ctx context.Context, ops []*fsmpb.Op, forwarded bool) ([]*fsmpb.OpResult, error) {
	d, _ := ctx.Deadline()
	deadlines := make([]time.Time, len(ops))
	for i := range deadlines {
		deadlines[i] = d
	}
	res, err := s.submitOpsUntil(ctx, ops, deadlines, forwarded)
	if err == nil && slices.Contains(res, nil) {
		return nil, context.DeadlineExceeded
	}
	return res, err
}

// submitOpsUntil runs lease operations through the batchers, each with its
// caller's deadline (zero: none); the result of an op dropped because its
// deadline passed before it was proposed is nil. The input limits are
// checked here, so ops forwarded by a follower meet the same ones as this
// member's own callers.
func (s *Server) submitOpsUntil(ctx context.Context, ops []*fsmpb.Op, deadlines []time.Time, forwarded bool) ([]*fsmpb.OpResult, error) {
	// Sized once, before dropIdleUnlessAllKnow may shrink the ops: the
	// batchers group by a size that can only be over, never under.
	size, err := checkOpsSize(ops, forwarded)
	if err != nil {
		return nil, err
	}
	if err := validateOps(ops); err != nil {
		return nil, err
	}
	s.dropIdleUnlessAllKnow(ops)
	if err := s.checkOpsFormat(ops); err != nil {
		return nil, err
	}
	var res []*fsmpb.OpResult
	run := func(q *batcher) func(context.Context) error {
		return func(ctx context.Context) (err error) {
			res, err = q.submitSized(ctx, ops, deadlines, size)
			return err
		}
	}
	err = s.route(ctx, forwarded, run(s.applyQ), run(s.fwdQ))
	return res, err
}

// submitOpsThen is submitOps without waiting, for Session calls: when this
// member leads, or follows a leader it knows, the ops (all with deadline,
// zero: none) go to the batcher now and then gets their results or the
// error on the goroutine that flushed them. then must not block. It
// reports false, without calling then, when the call must be served the
// waiting way (submitOps: its checks answer a bad op, and its route waits
// for a leader and retries across leader changes): no leader known, a
// fenced disk, an op the input checks refuse, or ctx ended.
func (s *Server) submitOpsThen(ctx context.Context, ops []*fsmpb.Op, deadline time.Time, then func([]*fsmpb.OpResult, error)) bool {
	size, ok := s.queueChecks(ops, false)
	if !ok {
		return false
	}
	q := s.applyQ
	if !s.isLeader() {
		if addr, _ := s.leaderAddr(); addr == "" {
			return false
		}
		q = s.fwdQ
	}
	deadlines := make([]time.Time, len(ops))
	for i := range deadlines {
		deadlines[i] = deadline
	}
	return q.submitThen(ctx, ops, deadlines, size, func(r submitResult) { then(r.results, r.err) })
}

// forwardedThen is submitOpsThen for a batch a follower forwarded over its
// stream, on the leader: the ops, each with its forwarded deadline, go to
// the batcher now, and answer gets the batch's answer on the goroutine
// that flushed it. A failed flush (a leader change, a fenced disk) calls
// retry instead, which serves the batch the unary way (route's retries and
// errors). false, calling neither: serve it the unary way now (not the
// leader, a fenced disk, a batch the input checks refuse, ctx ended).
// Neither answer nor retry may block.
func (s *Server) forwardedThen(ctx context.Context, req *peerpb.ForwardRequest, answer func(*peerpb.ForwardResponse), retry func()) bool {
	if !s.isLeader() {
		return false
	}
	size, ok := s.queueChecks(req.GetBatch().GetOps(), true)
	if !ok {
		return false
	}
	return s.applyQ.submitThen(ctx, req.GetBatch().GetOps(), forwardedDeadlines(ctx, req), size, func(r submitResult) {
		if r.err != nil {
			retry()
			return
		}
		answer(forwardResponse(r.results))
	})
}

// queueChecks runs submitOpsUntil's input checks for the worker-less paths
// (submitOpsThen, forwardedThen) and returns the ops' encoded size; false
// when the ops must be served the waiting way instead, whose checks answer
// them: a fenced disk, an op too large, malformed or of a format not every
// member applies.
func (s *Server) queueChecks(ops []*fsmpb.Op, forwarded bool) (int, bool) {
	if s.diskFault() != nil {
		return 0, false
	}
	size, err := checkOpsSize(ops, forwarded)
	if err != nil || validateOps(ops) != nil {
		return 0, false
	}
	s.dropIdleUnlessAllKnow(ops)
	return size, s.checkOpsFormat(ops) == nil
}

// flushLocal applies one batch as one Raft log entry (leader). The leader
// draws each new grant's lease secret here, where it proposes.
func (s *Server) flushLocal(ops []*fsmpb.Op, _ []time.Time) ([]*fsmpb.OpResult, error) {
	s.metrics.raftBatchOps(len(ops))
	stampSecrets(ops)
	resp, err := s.applyLocal(&fsmpb.Command{Cmd: &fsmpb.Command_Batch{Batch: &fsmpb.Batch{Ops: ops}}})
	if err != nil {
		return nil, err
	}
	br, ok := resp.(*fsmpb.BatchResult)
	if !ok {
		return nil, fmt.Errorf("internal error: batch applied with result %T", resp)
	}
	return br.GetResults(), nil
}

// applyLocal stamps the leader's clock (never backwards, deaf to wall
// clock steps: leaderclock.go) into cmd and applies it.
func (s *Server) applyLocal(cmd *fsmpb.Command) (any, error) {
	if !s.lclock.ready() {
		return nil, fmt.Errorf("%w: this member has just become leader and is catching up the log", errRetry)
	}
	cmd.NowMs = s.stampMs()
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	// A batch (the hot path) is taken back by the FSM when its entry
	// commits instead of decoded again (fsm/proposed.go); its ops are not
	// changed once proposed, a failed proposal is withdrawn first.
	own := cmd.GetBatch() != nil
	if own {
		s.fsm.Proposed(data, cmd)
	}
	f := s.node.raft.Apply(data, applyTimeout)
	if err := f.Error(); err != nil {
		if own {
			s.fsm.Withdraw(data)
		}
		return nil, err
	}
	return f.Response(), nil
}

// forwardPipeline is how many Peer.Forward calls a follower keeps in
// flight (server.go).
const forwardPipeline = 4

// flushForward sends one batch to the leader (follower), with each op's
// caller deadline: the call lasts until the latest of them (at most
// applyTimeout), and the leader drops the ops whose deadline passed. done
// gets the results (nil: an op dropped for its deadline) or the error, on
// the forwarding stream's reader (forwardThen): no goroutine waits for the
// answer only to pass it on.
func (s *Server) flushForward(ops []*fsmpb.Op, deadlines []time.Time, done func([]*fsmpb.OpResult, error)) {
	addr := s.leaderPeerAddr()
	if addr == "" {
		done(nil, ErrNoLeader)
		return
	}
	s.metrics.forwardedOps(len(ops))
	now := time.Now()
	var last time.Time
	left := make([]int64, len(ops))
	for i, d := range deadlines {
		if d.IsZero() {
			last = now.Add(applyTimeout)
			continue
		}
		left[i] = max(1, (d.Sub(now) + time.Millisecond - 1).Milliseconds())
		if d.After(last) {
			last = d
		}
	}
	s.forwardThen(addr, &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: ops}, DeadlineInMs: left}, last, func(resp *peerpb.ForwardResponse, err error) {
		if err != nil {
			done(nil, forwardError(addr, err))
			return
		}
		res := resp.GetResults()
		for _, i := range resp.GetDropped() {
			if int(i) < len(res) {
				res[i] = nil
			}
		}
		done(res, nil)
	})
}

// forwardedDeadlines are the per-op deadlines of a forwarded batch, on this
// member's clock (a duration travels; a wall-clock time would carry the
// members' skew). An older follower sends none: the call's deadline holds.
func forwardedDeadlines(ctx context.Context, req *peerpb.ForwardRequest) []time.Time {
	n := len(req.GetBatch().GetOps())
	out := make([]time.Time, n)
	left := req.GetDeadlineInMs()
	if len(left) != n {
		d, _ := ctx.Deadline()
		for i := range out {
			out[i] = d
		}
		return out
	}
	now := time.Now()
	for i, ms := range left {
		if ms > 0 {
			out[i] = now.Add(time.Duration(ms) * time.Millisecond)
		}
	}
	return out
}

// applyCommand runs a non-batch command (enrollment, formation) on the leader.
func (s *Server) applyCommand(ctx context.Context, cmd *fsmpb.Command, forwarded bool) (*fsmpb.OpResult, error) {
	if err := s.checkFormat(cmd); err != nil {
		return nil, err
	}
	var res *fsmpb.OpResult
	local := func(context.Context) error {
		resp, err := s.applyLocal(proto.Clone(cmd).(*fsmpb.Command))
		if err != nil {
			return err
		}
		r, ok := resp.(*fsmpb.OpResult)
		if !ok {
			return fmt.Errorf("internal error: command applied with result %T", resp)
		}
		res = r
		return nil
	}
	remote := func(context.Context) error {
		addr := s.leaderPeerAddr()
		d, _ := ctx.Deadline()
		fctx, cancel := s.forwardContext(d)
		defer cancel()
		resp, err := s.peerClient(addr).ForwardCommand(fctx, &peerpb.ForwardCommandRequest{Command: cmd})
		if err != nil {
			return forwardError(addr, err)
		}
		res = resp.GetResult()
		return nil
	}
	err := s.route(ctx, forwarded, local, remote)
	return res, err
}

// forwardContext is the context of a forwarding call: until the caller's
// deadline (zero: none), at most applyTimeout.
func (s *Server) forwardContext(deadline time.Time) (context.Context, context.CancelFunc) {
	if limit := time.Now().Add(applyTimeout); deadline.IsZero() || deadline.After(limit) {
		deadline = limit
	}
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, s.cfg.Name), cancel
}

// forwardError classifies a failed forward: the leader moved, died or is
// unreachable are all worth a retry; anything else is returned as is.
func forwardError(addr string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: forward to %s: %v", errRetry, addr, status.Convert(err).Message())
	}
	return err
}
