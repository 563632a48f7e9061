package client

import "sync"

// dispatcher delivers StateChanges in order, from its own goroutine, to
// the WithStateHandler function and to each lease's Changes channel. The
// queue is unbounded so that whoever reports a change (the renewer, a lease
// timer) never waits for a slow handler.
type dispatcher struct {
	handler func(StateChange)
	wake    chan struct{}

	mu     sync.Mutex
	queue  []StateChange
	closed bool
}

func newDispatcher(h func(StateChange)) *dispatcher {
	return &dispatcher{handler: h, wake: make(chan struct{}, 1)}
}

func (d *dispatcher) push(ev StateChange) {
	d.mu.Lock()
	d.queue = append(d.queue, ev)
	d.mu.Unlock()
	d.signal()
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close lets the goroutine end once the queue is empty.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.signal()
}

func (d *dispatcher) run() {
	for {
		d.mu.Lock()
		batch, closed := d.queue, d.closed
		d.queue = nil
		d.mu.Unlock()
		for _, ev := range batch {
			if d.handler != nil {
				d.handler(ev)
			}
			deliver(ev.Lease.changes, ev)
			if ev.To == Lost || ev.To == Released {
				close(ev.Lease.changes) // the final change: exactly once per lease
			}
		}
		if len(batch) == 0 && closed {
			return
		}
		if len(batch) == 0 {
			<-d.wake
		}
	}
}

// deliver sends without blocking, dropping the oldest change when the
// reader is behind so that the latest is always there.
func deliver(ch chan StateChange, ev StateChange) {
	for {
		select {
		case ch <- ev:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
