package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/triadlm/triad/proto/triadv1"
)

// Client talks to the members of one Triad cluster. It is safe for
// concurrent use. Close it when done; closing does not release leases.
type Client struct {
	cfg     config
	members []member
	byAddr  map[string]int // configured address → index, to follow leader hints

	mu      sync.Mutex
	current int // member that answered last (or the leader hint); tried first
	closed  bool

	renew *renewer
}

type member struct {
	addr string
	conn *grpc.ClientConn
	rpc  triadv1.LicensingClient
}

// New returns a Client for the members at addrs (licensing addresses,
// host:port). Connections are made lazily, so New does not fail because a
// member is down. The background renewer starts here and idles until the
// first lease is held.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("triad: client needs at least one member address")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{cfg: cfg, byAddr: make(map[string]int, len(addrs))}
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.dialOpts...)
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			c.closeConns()
			return nil, errors.New("triad: empty member address")
		}
		if _, dup := c.byAddr[a]; dup {
			c.closeConns()
			return nil, fmt.Errorf("triad: member address %q given twice", a)
		}
		conn, err := grpc.NewClient(a, dialOpts...)
		if err != nil {
			c.closeConns()
			return nil, fmt.Errorf("triad: member %s: %w", a, err)
		}
		c.byAddr[a] = len(c.members)
		c.members = append(c.members, member{addr: a, conn: conn, rpc: triadv1.NewLicensingClient(conn)})
	}
	c.renew = newRenewer(c)
	go c.renew.run()
	return c, nil
}

// Close stops the renewer and closes the connections. It does NOT release
// leases: the cluster frees them when their TTL runs out. Leases still held
// become Lost with ErrClosed, because nothing keeps them alive any more.
// Call Release first to free seats at once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.renew.stop()
	return c.closeConns()
}

func (c *Client) closeConns() error {
	var errs []error
	for _, m := range c.members {
		errs = append(errs, m.conn.Close())
	}
	return errors.Join(errs...)
}

// Features lists capacity and seats in use per feature and version, as seen
// by whichever member answers (not routed through the leader, so it keeps
// working while a member is cut off, and may lag by a moment).
func (c *Client) Features(ctx context.Context) ([]*triadv1.FeatureUsage, error) {
	var resp *triadv1.FeaturesResponse
	err := c.call(ctx, "features", func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
		r, err := rpc.Features(ctx, &triadv1.FeaturesRequest{ProtocolVersion: c.cfg.protocol})
		if err != nil {
			return "", err
		}
		resp = r
		return "", nil
	})
	if err != nil {
		return nil, err
	}
	return resp.GetFeatures(), nil
}
