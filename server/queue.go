package server

import (
	"context"
	"time"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// Queued checkouts (issue 13): the FSM keeps the queues (fsm/queue.go);
// the edge turns CheckoutRequest.queue into Grant.queue_wait_ms, answers
// QUEUED as a response (not an error), and lets the client leave the queue.

const (
	// maxQueueWaitSeconds bounds CheckoutRequest.queue_wait_seconds (7 days,
	// as the FSM's cap).
	maxQueueWaitSeconds = 7 * 24 * 3600
	// defaultQueueWait is the wait of a queued checkout that gives none.
	defaultQueueWait = time.Hour
)

func queueWait(seconds uint32) time.Duration {
	if seconds == 0 {
		return defaultQueueWait
	}
	return time.Duration(seconds) * time.Second
}

// CancelQueued takes a queued checkout out of its queue (Dequeue op).
func (l *licensingService) CancelQueued(ctx context.Context, req *triadv1.CancelQueuedRequest) (*triadv1.CancelQueuedResponse, error) {
	defer l.m.observe(methodRelease, time.Now())
	if err := checkProtocol(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	op := &fsmpb.Op{Op: &fsmpb.Op_Dequeue{Dequeue: &fsmpb.Dequeue{RequestId: req.GetRequestId(), ClientId: req.GetClientId()}}}
	if err := validateOp(op); err != nil {
		return nil, err
	}
	res, err := l.s.submitOps(ctx, []*fsmpb.Op{op}, false)
	if err != nil {
		return nil, toStatus(err)
	}
	r := res[0]
	switch r.GetCode() {
	case fsmpb.Code_OK:
		return &triadv1.CancelQueuedResponse{Removed: true, Message: r.GetMessage()}, nil
	case fsmpb.Code_NOT_FOUND:
		return &triadv1.CancelQueuedResponse{Message: r.GetMessage(), GrantedLeaseId: r.GetLease().GetId()}, nil
	}
	return nil, resultStatus(r.GetCode(), r.GetMessage())
}

// UsageQueue lists the queued checkouts (admin.Backend); a consistent
// read first catches up with the leader's commit index.
func (s *Server) UsageQueue(ctx context.Context, consistent bool) ([]*triadv1.QueuedCheckout, error) {
	if consistent {
		if err := s.readIndex(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	var out []*triadv1.QueuedCheckout
	for _, q := range s.fsm.Queue() {
		e, g := q.Entry, q.Entry.GetGrant()
		out = append(out, &triadv1.QueuedCheckout{
			Feature: g.GetFeature(), Version: g.GetVersion(), Count: max(g.GetCount(), 1), Position: uint32(q.Position),
			User: g.GetUser(), Host: g.GetHost(), Pid: g.GetPid(),
			WaitingSinceUnixMs: e.GetEnqueuedMs(), WaitDeadlineUnixMs: e.GetDeadlineMs(), ExpiresUnixMs: e.GetExpiresMs(),
			ViaMember: g.GetViaMember(),
		})
	}
	return out, nil
}
