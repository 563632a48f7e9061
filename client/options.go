package client

import (
	"crypto/rand"
	"crypto/tls"
	"log/slog"
	"os"
	"os/user"
	"time"

	"google.golang.org/grpc"
)

// Defaults, see DESIGN.md §11 of the product: the server's lease TTL is 30 s
// and the client renews every TTL/3.
const (
	defaultCallTimeout = 5 * time.Second
	defaultLeaseTTL    = 30 * time.Second
	// minRenewInterval keeps a tiny TTL from turning the renewer into a busy loop.
	minRenewInterval = 50 * time.Millisecond
	backoffStart     = 50 * time.Millisecond
	backoffMax       = time.Second
	// defaultGrace applies when a server does not say (grace_seconds 0).
	defaultGrace = 2 * time.Hour
	// maxHeldMargin is how long before LastRenewed+TTL the client stops
	// calling a lease Held; smaller for short TTLs (TTL/5).
	maxHeldMargin = 2 * time.Second
	// parallelCheckouts bounds the checkouts one renewal round runs at once
	// when leases move between the cluster and the backup.
	parallelCheckouts = 8
)

// Option configures a Client in New.
type Option func(*config)

type config struct {
	dialOpts      []grpc.DialOption
	tls           *tls.Config // nil: system roots
	insecure      bool
	user, host    string
	pid           int64
	clientID      string
	callTimeout   time.Duration
	renewInterval time.Duration // 0: TTL/3 of the shortest held lease
	protocol      uint32
	logger        *slog.Logger
	backup        []string
	onChange      func(StateChange)
	margin        time.Duration // 0: min(2 s, TTL/5); set by tests
	unaryOnly     bool          // WithUnaryCalls
}

func defaultConfig() config {
	host, _ := os.Hostname()
	return config{
		user:        currentUser(),
		host:        host,
		pid:         int64(os.Getpid()),
		clientID:    rand.Text(),
		callTimeout: defaultCallTimeout,
		protocol:    ProtocolVersion,
		logger:      slog.New(slog.DiscardHandler),
	}
}

// currentUser falls back to $USER because os/user can fail in minimal
// containers (no /etc/passwd entry for the uid), and a lease should still
// name somebody.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return name
	}
	return "unknown"
}

// WithDialOptions adds gRPC dial options after the defaults (the transport
// credentials of WithTLS or WithInsecure), so grpc.WithTransportCredentials
// here replaces them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithIdentity sets who the leases are taken for, as shown by the usage
// listings. Defaults: the OS user name, os.Hostname, os.Getpid and a random
// client id. Empty strings and a zero pid keep the default. The cluster
// scopes request ids by client id, so a client id set here must be unique
// per process (it is shown in listings: it is a scope, not a secret).
func WithIdentity(user, host string, pid int64, clientID string) Option {
	return func(c *config) {
		if user != "" {
			c.user = user
		}
		if host != "" {
			c.host = host
		}
		if pid != 0 {
			c.pid = pid
		}
		if clientID != "" {
			c.clientID = clientID
		}
	}
}

// WithCallTimeout sets the timeout of one attempt against one member
// (default 5 s). A call as a whole is bounded by the caller's context; an
// attempt that times out is retried on the next member.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.callTimeout = d
		}
	}
}

// WithRenewInterval fixes the renewal interval instead of TTL/3 of the
// shortest held lease.
func WithRenewInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.renewInterval = d
		}
	}
}

// WithProtocolVersion overrides the protocol version sent; meant for tests
// of version negotiation.
func WithProtocolVersion(v uint32) Option {
	return func(c *config) { c.protocol = v }
}

// WithLogger sets where the client logs failovers and lost leases
// (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithBackup names a backup server: a standalone Triad server with its own
// license (typically a countdown license of N usage hours). It is used only
// while no cluster member answers (or every member refuses the renewals,
// see Lease.RenewErr): a lease whose cluster lease has left Held moves to
// it (a checkout there), and Checkout falls back to it when the cluster
// gives no answer within the call timeout. As soon as the cluster answers
// again the lease goes back (its cluster lease renewed if it still exists,
// else checked out again) and the backup lease is released at once, to
// spare the backup's hours. Several addresses are tried in turn like
// cluster members.
func WithBackup(addrs ...string) Option {
	return func(c *config) {
		for _, a := range addrs {
			if a != "" {
				c.backup = append(c.backup, a)
			}
		}
	}
}

// WithStateHandler sets a function called for every state change of every
// lease of the Client (see StateChange). Calls come in order from one
// goroutine owned by the Client, never from the renewer, so a slow handler
// delays later handler calls but never a renewal. The handler must not
// block for long and may call any Lease or Client method.
func WithStateHandler(f func(StateChange)) Option {
	return func(c *config) { c.onChange = f }
}

// WithUnaryCalls makes every checkout, renewal and release its own unary
// RPC, as clients before the Session stream did. By default they share one
// long-lived Session stream per member (less work per call on both sides),
// falling back to unary calls with a member that does not speak it. Meant
// for comparisons (triadctl bench --unary) and for tests.
func WithUnaryCalls() Option {
	return func(c *config) { c.unaryOnly = true }
}
