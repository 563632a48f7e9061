package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
		var err error
		switch {
		case s.isLeader():
			err = local(ctx)
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

// submitOps runs lease operations through the batchers. The input limits
// are checked here, so ops forwarded by a follower meet the same ones as
// this member's own callers.
func (s *Server) submitOps(ctx context.Context, ops []*fsmpb.Op, forwarded bool) ([]*fsmpb.OpResult, error) {
	if err := checkOpsSize(ops, forwarded); err != nil {
		return nil, err
	}
	if err := validateOps(ops); err != nil {
		return nil, err
	}
	var res []*fsmpb.OpResult
	run := func(q *batcher) func(context.Context) error {
		return func(ctx context.Context) (err error) {
			res, err = q.submit(ctx, ops)
			return err
		}
	}
	err := s.route(ctx, forwarded, run(s.applyQ), run(s.fwdQ))
	return res, err
}

// flushLocal applies one batch as one Raft log entry (leader). The leader
// draws each new grant's lease secret here, where it proposes.
func (s *Server) flushLocal(ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
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
	cmd.NowMs = s.stampMs()
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	f := s.node.raft.Apply(data, applyTimeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// flushForward sends one batch to the leader (follower).
func (s *Server) flushForward(ops []*fsmpb.Op) ([]*fsmpb.OpResult, error) {
	addr := s.leaderPeerAddr()
	if addr == "" {
		return nil, ErrNoLeader
	}
	s.metrics.forwardedOps(len(ops))
	ctx, cancel := s.forwardContext()
	defer cancel()
	resp, err := s.peerClient(addr).Forward(ctx, &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: ops}})
	if err != nil {
		return nil, forwardError(addr, err)
	}
	return resp.GetResults(), nil
}

// applyCommand runs a non-batch command (enrollment, formation) on the leader.
func (s *Server) applyCommand(ctx context.Context, cmd *fsmpb.Command, forwarded bool) (*fsmpb.OpResult, error) {
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
		fctx, cancel := s.forwardContext()
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

func (s *Server) forwardContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(s.ctx, applyTimeout)
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
