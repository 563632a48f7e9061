// Package failover is the member-to-member transport: the trust boundary
// between the three members and everything else. It owns the failover port
// (default 4086), which carries both Raft's transport and the gRPC Peer
// service (formation, heartbeats, forwarding to the leader), told apart by
// one header byte each connection sends before anything else; then, unless
// the member runs with --insecure, both speak mutual TLS under the cluster
// CA, and only member certificates (pki.MemberOU) of the formed members are
// accepted. Nothing member-only is served on the licensing port.
package failover

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/triadlm/triad/server/pki"
)

// Header bytes: the first byte of every connection to the failover port.
const (
	headerRaft byte = 'R'
	headerPeer byte = 'P'
)

// handshakeTimeout bounds the header byte and the TLS handshake of one
// incoming connection, so a silent connection cannot hold a goroutine.
const handshakeTimeout = 5 * time.Second

// MaxPeerMessage is the largest Peer message (a forwarded batch of 1,024
// checkouts is well under 1 MiB).
const MaxPeerMessage = 8 << 20

// Side is one member's failover port.
type Side struct {
	ln        net.Listener
	advertise net.Addr
	dialer    net.Dialer
	creds     *pki.Creds // nil: plaintext (--insecure)

	serverTLS, clientTLS *tls.Config

	members atomic.Pointer[map[string]bool] // formed members; nil before formation

	raftConns chan net.Conn
	peerConns chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// Listen opens the failover port on addr. advertise is the address other
// members dial ("" = the address listened on, with an unspecified host
// shown as loopback until formation names it). creds nil means plaintext.
func Listen(addr, advertise string, dialer net.Dialer, creds *pki.Creds) (*Side, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on the failover port %s: %w", addr, err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	adv, err := resolveAdvertise(advertise)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("failover advertise address %q: %w", advertise, err)
	}
	s := &Side{ln: ln, advertise: adv, dialer: dialer, creds: creds,
		raftConns: make(chan net.Conn), peerConns: make(chan net.Conn), done: make(chan struct{}),
		conns: map[string]*grpc.ClientConn{}}
	if creds != nil {
		s.serverTLS = creds.MutualServer(s.checkMember)
		s.clientTLS = creds.MutualClient(s.checkMember)
	}
	go s.acceptLoop()
	return s, nil
}

// resolveAdvertise turns a listen address into one peers can dial. An
// unspecified host is advertised as loopback only until formation, which
// replaces it with the host the administrator named for this member.
func resolveAdvertise(listen string) (net.Addr, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
}

// Addr is the address listened on (the real port when 0 was asked).
func (s *Side) Addr() net.Addr { return s.ln.Addr() }

// SetMembers restricts the failover port to the named members (the formed
// cluster). Before it is called, any member certificate of the cluster CA
// is accepted, as formation needs.
func (s *Side) SetMembers(names []string) {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	s.members.Store(&m)
}

func (s *Side) checkMember(name string) error {
	m := s.members.Load()
	if m == nil || (*m)[name] {
		return nil
	}
	return fmt.Errorf("member certificate %q does not name a member of this cluster", name)
}

func (s *Side) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.Close()
			return
		}
		go s.route(c)
	}
}

// route reads the header byte and hands the connection to Raft (after the
// TLS handshake) or to the Peer gRPC server (which does its own).
func (s *Side) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	var h [1]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		c.Close()
		return
	}
	var dst chan net.Conn
	switch h[0] {
	case headerRaft:
		dst = s.raftConns
		if s.serverTLS != nil {
			tc := tls.Server(c, s.serverTLS)
			if err := tc.Handshake(); err != nil {
				c.Close()
				return
			}
			c = tc
		}
		c.SetDeadline(time.Time{})
	case headerPeer:
		dst = s.peerConns
		c.SetDeadline(time.Time{}) // gRPC sets its own handshake deadline
	default:
		c.Close()
		return
	}
	select {
	case dst <- c:
	case <-s.done:
		c.Close()
	}
}

// Close stops listening and closes the pooled Peer connections.
func (s *Side) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ln.Close()
		s.mu.Lock()
		for a, c := range s.conns {
			c.Close()
			delete(s.conns, a)
		}
		s.mu.Unlock()
	})
	return nil
}

// chanListener is a net.Listener fed by route. Closing it ends its
// Accept (its server is stopping); the port itself closes with the Side.
type chanListener struct {
	s         *Side
	ch        chan net.Conn
	addr      net.Addr
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanListener(s *Side, ch chan net.Conn, addr net.Addr) chanListener {
	return chanListener{s: s, ch: ch, addr: addr, closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.s.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// RaftLayer is Raft's stream layer on this failover port.
func (s *Side) RaftLayer() raft.StreamLayer {
	r := &raftLayer{chanListener: newChanListener(s, s.raftConns, s.advertise), stop: make(chan struct{})}
	r.dialOnce = func(ctx context.Context, addr string) (net.Conn, error) { return s.dial(ctx, addr, headerRaft, true) }
	return r
}

type raftLayer struct {
	chanListener
	stop     chan struct{} // StopRetries
	stopOnce sync.Once
	dialOnce func(ctx context.Context, addr string) (net.Conn, error)
}

// refusedRetry is how often a Raft dial to a member whose port refuses
// connections tries again.
const refusedRetry = 50 * time.Millisecond

// Dial connects to a member's failover port for Raft. A refused connection
// means the member's host answers but its process is not (yet) running:
// the dial keeps trying every refusedRetry within Raft's timeout instead
// of failing at once. hashicorp/raft waits between attempts to replicate to
// a member it cannot reach with a backoff that doubles per failure up to
// 10.24 s (replication.go), so a member restarted after a few seconds
// down waited that long for the log: 8.6 s after a 12 s outage with
// 100,000 leases held (docs/performance.md). Now a failure counts once per
// timeout, not once per refused connection, and a member that comes back
// is reached within refusedRetry. Other errors (timeouts, TLS) return at
// once, as before.
func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		c, err := r.dialOnce(ctx, string(addr))
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
		t := time.NewTimer(refusedRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, err
		case <-r.stop:
			t.Stop()
			return nil, err
		case <-r.s.done:
			t.Stop()
			return nil, err
		}
	}
}

// StopRetries makes dials in progress, and later ones, give up at the
// first refusal: called before Raft shuts down, which waits for its
// replication goroutines.
func (r *raftLayer) StopRetries() {
	r.stopOnce.Do(func() { close(r.stop) })
}

// dial connects to a member's failover port and sends the header; with
// handshake it also does the TLS handshake (Raft), otherwise gRPC does.
func (s *Side) dial(ctx context.Context, addr string, header byte, handshake bool) (net.Conn, error) {
	var cfg *tls.Config
	if handshake {
		cfg = s.clientTLS
	}
	return dialHeader(ctx, s.dialer, addr, header, cfg)
}

// dialHeader connects to a failover port, sends the header byte and, with
// cfg, does the TLS handshake (Raft); without, the caller (gRPC) does it.
func dialHeader(ctx context.Context, d net.Dialer, addr string, header byte, cfg *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte{header}); err != nil {
		c.Close()
		return nil, err
	}
	if cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with member %s: %w", addr, err)
		}
		c = tc
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// PeerListener is what the Peer gRPC server serves.
func (s *Side) PeerListener() net.Listener {
	l := newChanListener(s, s.peerConns, s.ln.Addr())
	return &l
}

// ServerOptions are the Peer gRPC server's options: mutual TLS (or
// plaintext with --insecure) and message size limits.
func (s *Side) ServerOptions() []grpc.ServerOption {
	creds := insecure.NewCredentials()
	if s.serverTLS != nil {
		creds = credentials.NewTLS(s.serverTLS)
	}
	return []grpc.ServerOption{grpc.Creds(creds), grpc.MaxRecvMsgSize(MaxPeerMessage), grpc.MaxSendMsgSize(MaxPeerMessage)}
}

// Conn returns the pooled Peer connection to the member whose failover
// port is addr.
func (s *Side) Conn(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr, peerDialOptions(s.clientTLS, s.dialer)...)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

// CandidateConn is a new (unpooled) Peer connection to a member that is
// not in the formed cluster yet, such as the replacement of a dead member:
// its certificate must be a member certificate of the cluster CA, under any
// name. The caller closes it.
func (s *Side) CandidateConn(addr string) (*grpc.ClientConn, error) {
	var cfg *tls.Config
	if s.creds != nil {
		cfg = s.creds.MutualClient(nil)
	}
	return grpc.NewClient("passthrough:///"+addr, peerDialOptions(cfg, s.dialer)...)
}

// DialPeer connects to the Peer service on a member's failover port as a
// member would: with a member certificate of creds (nil: plaintext, for
// members run with --insecure). For tools and tests; members use Conn.
func DialPeer(addr string, creds *pki.Creds) (*grpc.ClientConn, error) {
	var cfg *tls.Config
	if creds != nil {
		cfg = creds.MutualClient(nil)
	}
	return grpc.NewClient("passthrough:///"+addr, peerDialOptions(cfg, net.Dialer{})...)
}

func peerDialOptions(cfg *tls.Config, d net.Dialer) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		return dialHeader(ctx, d, a, headerPeer, nil)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxPeerMessage), grpc.MaxCallSendMsgSize(MaxPeerMessage)),
		grpc.WithInitialWindowSize(1 << 20), grpc.WithInitialConnWindowSize(1 << 20),
		grpc.WithContextDialer(dial)}
}
