// Package notify sends a member's notifications: mail over SMTP (optional
// STARTTLS or TLS, PLAIN or LOGIN authentication) and signed JSON webhooks,
// with per-event switches and text/template subjects and bodies. It knows
// nothing of Raft: the server decides which member sends which event
// (docs/notifications.md) and hands it an Event.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Channel names, as logged and as given to Test.
const (
	ChannelMail    = "mail"
	ChannelWebhook = "webhook"
)

// queueLen bounds the messages waiting per channel; more are dropped (and
// logged): a channel that is down must not grow the member's memory.
const queueLen = 256

// Retry backoff between attempts of one message.
const (
	retryBase = time.Second
	retryMax  = 30 * time.Second
)

// Result is the outcome of one delivery.
type Result struct {
	Channel  string
	Target   string // recipients or the (redacted) URL
	Attempts int
	Err      error
}

// Notifier delivers events through the configured channels. Each channel
// (the mail server, each webhook) has its own queue and goroutine, so a
// dead endpoint delays only itself.
type Notifier struct {
	cfg    *Config
	sender string
	log    *slog.Logger
	now    func() time.Time
	// retryBase is the first retry's delay (tests shorten it).
	retryBase time.Duration
	client    *http.Client

	chans []*channel
	// onResult, when set, sees every final outcome (metrics).
	onResult func(kind string, r Result)
	wg       sync.WaitGroup
	ctx      context.Context
	stop     context.CancelFunc
}

type channel struct {
	name, target string
	attempts     int
	deliver      func(ctx context.Context, j job) error
	q            chan job
	// pending counts queued and running jobs (Flush waits for zero).
	pending atomic.Int64
}

type job struct {
	e             Event
	subject, body string
	// delivery identifies the message across retries (webhook header
	// X-Triad-Delivery), so a receiver can drop a duplicate.
	delivery string
}

// New makes a notifier for member sender; cfg must have been validated.
// now is the member's wall clock. Start runs its goroutines.
func New(cfg *Config, sender string, log *slog.Logger, now func() time.Time) *Notifier {
	if now == nil {
		now = time.Now
	}
	n := &Notifier{cfg: cfg, sender: sender, log: log, now: now, retryBase: retryBase}
	n.ctx, n.stop = context.WithCancel(context.Background())
	if cfg == nil {
		n.cfg = &Config{}
		return n
	}
	n.client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	if s := cfg.SMTP; s != nil {
		n.chans = append(n.chans, &channel{name: ChannelMail, target: strings.Join(s.To, ","), attempts: s.Attempts,
			deliver: func(ctx context.Context, j job) error {
				return s.sendMail(ctx, sender, j.subject, j.body, n.now())
			}})
	}
	for _, w := range cfg.Webhooks {
		w := w
		c := n.client
		if w.roots != nil {
			c = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConfig("", w.roots)}}
		}
		n.chans = append(n.chans, &channel{name: ChannelWebhook, target: redactURL(w.URL), attempts: w.Attempts,
			deliver: func(ctx context.Context, j job) error {
				// The signature's timestamp is the real wall clock (not a
				// test-shifted member clock): receivers compare it with theirs.
				return w.post(ctx, c, payload(j.e, j.delivery, j.subject, j.body, time.Now()), time.Now)
			}})
	}
	for _, c := range n.chans {
		c.q = make(chan job, queueLen)
	}
	return n
}

// OnResult registers f to see every delivery's final outcome (the server
// counts them in /metrics). Call it before Start.
func (n *Notifier) OnResult(f func(kind string, r Result)) { n.onResult = f }

// SetRetryBase sets the first retry's delay (tests).
func (n *Notifier) SetRetryBase(d time.Duration) { n.retryBase = d }

// Config is the configuration in force.
func (n *Notifier) Config() *Config { return n.cfg }

// Start runs one goroutine per channel until Close.
func (n *Notifier) Start() {
	for _, c := range n.chans {
		n.wg.Add(1)
		go func(c *channel) {
			defer n.wg.Done()
			for {
				select {
				case <-n.ctx.Done():
					return
				case j := <-c.q:
					n.deliver(c, j)
					c.pending.Add(-1)
				}
			}
		}(c)
	}
}

// Send queues e on every channel if its kind is enabled. It never blocks.
func (n *Notifier) Send(e Event) {
	if !n.cfg.EventEnabled(e.Kind) {
		return
	}
	if e.Sender == "" {
		e.Sender = n.sender
	}
	if e.Time.IsZero() {
		e.Time = n.now()
	}
	subject, body, err := n.cfg.Render(e)
	if err != nil {
		n.log.Error("notification template failed", "event", e.Kind, "error", err)
	}
	for _, c := range n.chans {
		c.pending.Add(1)
		select {
		case c.q <- job{e: e, subject: subject, body: body, delivery: deliveryID()}:
		default:
			c.pending.Add(-1)
			n.log.Error("notification dropped: the channel's queue is full", "event", e.Kind, "channel", c.name, "target", c.target)
			if n.onResult != nil {
				n.onResult(e.Kind, Result{Channel: c.name, Target: c.target, Err: errDropped})
			}
		}
	}
}

// Flush waits until every queued message was delivered or given up, or
// until ctx ends.
func (n *Notifier) Flush(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for _, c := range n.chans {
			idle = idle && c.pending.Load() == 0
		}
		if idle {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops the channel goroutines; undelivered messages are dropped.
func (n *Notifier) Close() {
	n.stop()
	n.wg.Wait()
}

func (n *Notifier) deliver(c *channel, j job) {
	var err error
	attempt := 0
	for attempt < c.attempts {
		attempt++
		if err = c.deliver(n.ctx, j); err == nil || isPermanent(err) || attempt == c.attempts {
			break
		}
		wait := Backoff(attempt, n.retryBase, retryMax, 0.8+0.4*mrand.Float64())
		n.log.Warn("notification attempt failed, retrying", "event", j.e.Kind, "channel", c.name, "target", c.target, "attempt", attempt, "retry_in", wait.Round(time.Millisecond).String(), "error", err)
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			n.logResult(j.e.Kind, j.subject, Result{Channel: c.name, Target: c.target, Attempts: attempt, Err: fmt.Errorf("member stopping: %w", err)})
			return
		case <-t.C:
		}
	}
	n.logResult(j.e.Kind, j.subject, Result{Channel: c.name, Target: c.target, Attempts: attempt, Err: err})
}

func isPermanent(err error) bool {
	var p errPermanent
	return errors.As(err, &p)
}

func (n *Notifier) logResult(kind, subject string, r Result) {
	if n.onResult != nil {
		n.onResult(kind, r)
	}
	if r.Err == nil {
		n.log.Info("notification sent", "event", kind, "channel", r.Channel, "target", r.Target, "subject", subject, "attempts", r.Attempts, "result", "sent")
		return
	}
	n.log.Error("notification failed", "event", kind, "channel", r.Channel, "target", r.Target, "subject", subject, "attempts", r.Attempts, "result", "failed", "error", r.Err.Error())
}

// errDropped is the outcome of a message its full queue could not take.
var errDropped = errors.New("dropped: queue full")

// ResultLabel is "sent", "failed" or "dropped" (metrics label).
func ResultLabel(r Result) string {
	switch {
	case r.Err == nil:
		return "sent"
	case errors.Is(r.Err, errDropped):
		return "dropped"
	}
	return "failed"
}

// ErrNoChannel is Test's answer when the channel asked for is not configured.
var ErrNoChannel = errors.New("not configured")

// Test sends a test message through every target of channel (mail or
// webhook) once, without retries, and returns each outcome with the exact
// error. The test message is sent even if events are switched off.
func (n *Notifier) Test(ctx context.Context, channelName string) ([]Result, error) {
	e := Event{Kind: Test, Sender: n.sender, Member: n.sender, Time: n.now(), Message: "test notification"}
	subject, body, err := n.cfg.Render(e)
	if err != nil {
		n.log.Error("notification template failed", "event", e.Kind, "error", err)
	}
	// Every target at once, so that several slow ones still answer
	// within the caller's deadline.
	var targets []*channel
	for _, c := range n.chans {
		if c.name == channelName {
			targets = append(targets, c)
		}
	}
	out := make([]Result, len(targets))
	var wg sync.WaitGroup
	for i, c := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := Result{Channel: c.name, Target: c.target, Attempts: 1}
			r.Err = c.deliver(ctx, job{e: e, subject: subject, body: body, delivery: deliveryID()})
			if p, ok := r.Err.(errPermanent); ok {
				r.Err = p.error
			}
			n.logResult(e.Kind, subject, r)
			out[i] = r
		}()
	}
	wg.Wait()
	if len(out) == 0 {
		key := "notify.smtp"
		if channelName == ChannelWebhook {
			key = "notify.webhooks"
		}
		return nil, fmt.Errorf("%s on member %s is %w: set %s in its config file (docs/notifications.md)", channelName, n.sender, ErrNoChannel, key)
	}
	return out, nil
}

func deliveryID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
