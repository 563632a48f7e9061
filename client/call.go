package client

import (
	"context"
	"fmt"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// attemptFunc performs one RPC against one member and returns the leader
// hint of the response ("" when it has none).
type attemptFunc func(ctx context.Context, rpc triadv1.LicensingClient) (leader string, err error)

// call runs attempt against the preferred member and, on a retryable error,
// against the next ones in turn until one answers or ctx is done. After a
// full round of failures it backs off (50 ms doubling to 1 s) so that a
// cluster without a leader is not hammered. Definite answers are returned at
// once, classified.
func (c *Client) call(ctx context.Context, op string, attempt attemptFunc) error {
	idx, err := c.start()
	if err != nil {
		return err
	}
	n := len(c.members)
	backoff := backoffStart
	var lastErr error
	for failures := 0; ; {
		if err := ctx.Err(); err != nil {
			return c.gaveUp(op, err, lastErr)
		}
		m := c.members[idx]
		actx, cancel := context.WithTimeout(ctx, c.cfg.callTimeout)
		leader, err := attempt(actx, m.rpc)
		cancel()
		if err == nil {
			c.answered(idx, leader)
			return nil
		}
		if !retryable(err) {
			if ctx.Err() != nil { // the caller's deadline, not the member's answer
				return c.gaveUp(op, ctx.Err(), err)
			}
			c.answered(idx, "")
			return classify(op, err)
		}
		lastErr = err
		c.cfg.logger.Debug("triad member did not answer, trying the next", "op", op, "member", m.addr, "err", err)
		idx = c.failed(idx)
		if failures++; failures%n == 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return c.gaveUp(op, ctx.Err(), lastErr)
			case <-t.C:
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
}

// gaveUp wraps the context error (so errors.Is(err, context.DeadlineExceeded)
// holds) and names the last member error for the person reading it.
func (c *Client) gaveUp(op string, ctxErr, last error) error {
	if last == nil {
		return fmt.Errorf("triad: %s: %w", op, ctxErr)
	}
	return fmt.Errorf("triad: %s: no member answered: %w (last error: %v)", op, ctxErr, last)
}

func (c *Client) start() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	return c.current, nil
}

// answered remembers the member to try first next time: the leader when the
// response names one we know (saving the follower→leader hop), else the
// member that just answered.
func (c *Client) answered(idx int, leader string) {
	if j, ok := c.byAddr[leader]; ok {
		idx = j
	}
	c.mu.Lock()
	c.current = idx
	c.mu.Unlock()
}

// failed moves the shared preference past a failed member, unless a
// concurrent call already moved it, and returns the member this call tries
// next (always the next one, so one call visits every member in turn).
func (c *Client) failed(idx int) int {
	next := (idx + 1) % len(c.members)
	c.mu.Lock()
	if c.current == idx {
		c.current = next
	}
	c.mu.Unlock()
	return next
}
