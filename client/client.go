package client

import (
	"context"
	"errors"

	"google.golang.org/grpc"

	"github.com/triadlm/triad/proto/triadv1"
)

// flowWindow is the fixed HTTP/2 stream and connection window (1 MiB).
const flowWindow = 1 << 20

// maxReply bounds a member's answer (a lease listing is the largest).
const maxReply = 64 << 20

// Client talks to the members of one Triad cluster and, optionally, to a
// backup server. It is safe for concurrent use. Close it when done; closing
// does not release leases.
type Client struct {
	cfg     config
	cluster *memberSet
	backup  *memberSet // nil without WithBackup
	renew   *renewer
	events  *dispatcher
}

// New returns a Client for the cluster members at addrs (licensing
// addresses, host:port). Connections are made lazily, so New does not fail
// because a member is down. The background renewer starts here and idles
// until the first lease is held.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("triad: client needs at least one member address")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	// Fixed flow-control windows switch off gRPC's BDP estimator, whose
	// pings cost a frame and a wake-up on both sides for every burst of
	// these small calls.
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(cfg.transportCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReply)),
		grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow)}, cfg.dialOpts...)
	cluster, err := dialSet("cluster", addrs, dialOpts, cfg.logger, !cfg.unaryOnly)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, cluster: cluster}
	if len(cfg.backup) > 0 {
		for _, b := range cfg.backup {
			if _, ok := cluster.byAddr[b]; ok {
				cluster.close()
				return nil, errors.New("triad: backup address " + b + " is also a cluster member")
			}
		}
		if c.backup, err = dialSet("backup", cfg.backup, dialOpts, cfg.logger, !cfg.unaryOnly); err != nil {
			cluster.close()
			return nil, err
		}
	}
	c.events = newDispatcher(cfg.onChange)
	go c.events.run()
	c.renew = newRenewer(c)
	go c.renew.run()
	return c, nil
}

// Close stops the renewer and closes the connections. It does NOT release
// leases: the servers free them when their TTL runs out. Leases still held
// become Lost with ErrClosed, because nothing keeps them alive any more.
// Call Release first to free seats at once.
func (c *Client) Close() error {
	if !c.renew.stop() {
		return nil
	}
	c.events.close()
	err := c.cluster.close()
	if c.backup != nil {
		err = errors.Join(err, c.backup.close())
	}
	return err
}

// Features lists capacity and seats in use per feature and version, as seen
// by whichever cluster member answers (not routed through the leader, so it
// keeps working while a member is cut off, and may lag by a moment). The
// backup server is never asked.
func (c *Client) Features(ctx context.Context) ([]*triadv1.FeatureUsage, error) {
	var resp *triadv1.FeaturesResponse
	err := c.cluster.call(ctx, "features", c.cfg.callTimeout, plainCall, func(ctx context.Context, rpc triadv1.LicensingClient) (string, error) {
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
