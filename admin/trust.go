package admin

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/triadv1"
)

// Vendor trust: the vendor public keys licenses must be signed with are
// replicated cluster state (recorded at formation from the members'
// --trust files), listed by any session and changed by a full one.

// TrustBackend is the vendor-trust part of Backend.
type TrustBackend interface {
	// VendorTrust lists the trusted keys, sorted by key bytes.
	VendorTrust(ctx context.Context) (*triadv1.VendorTrustListResponse, error)
	// AddVendorKey trusts the public key in keyFile.
	AddVendorKey(ctx context.Context, sessionID string, keyFile []byte) (*triadv1.VendorTrustListResponse, error)
	// RemoveVendorKey stops trusting the key whose id is keyID.
	RemoveVendorKey(ctx context.Context, sessionID, keyID string) (*triadv1.VendorTrustListResponse, error)
}

// maxKeyFile bounds a public key file (a few hundred bytes).
const maxKeyFile = 64 << 10

func (s *Service) VendorTrustList(ctx context.Context, req *triadv1.VendorTrustListRequest) (*triadv1.VendorTrustListResponse, error) {
	if _, err := s.auth(ctx, req.GetHeader(), "vendor trust list", false); err != nil {
		return nil, err
	}
	return s.b.VendorTrust(ctx)
}

func (s *Service) VendorTrustAdd(ctx context.Context, req *triadv1.VendorTrustAddRequest) (*triadv1.VendorTrustListResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "vendor trust add", true)
	if err != nil {
		return nil, err
	}
	if n := len(req.GetPublicKeyFile()); n == 0 || n > maxKeyFile {
		return nil, status.Errorf(codes.InvalidArgument, "the key file is %d bytes; give the vendor's .pub file (written by `triadctl vendor keygen`)", n)
	}
	return s.b.AddVendorKey(ctx, me.ID, req.GetPublicKeyFile())
}

func (s *Service) VendorTrustRemove(ctx context.Context, req *triadv1.VendorTrustRemoveRequest) (*triadv1.VendorTrustListResponse, error) {
	me, err := s.auth(ctx, req.GetHeader(), "vendor trust remove", true)
	if err != nil {
		return nil, err
	}
	id := strings.ToLower(strings.TrimSpace(req.GetKeyId()))
	if b, err := hex.DecodeString(id); err != nil || len(b) != 8 {
		return nil, status.Errorf(codes.InvalidArgument, "key id %q is not 16 hex digits: see `triadctl vendor trust list`", req.GetKeyId())
	}
	return s.b.RemoveVendorKey(ctx, me.ID, id)
}

// vendorTrustCommand is `triadctl vendor trust add|remove|list`.
func vendorTrustCommand() *cli.Command {
	table := func(c *cli.Context) func(*triadv1.VendorTrustListResponse) {
		return func(r *triadv1.VendorTrustListResponse) {
			if r.Message != "" {
				fmt.Fprintln(stdout(c), r.Message)
			}
			if len(r.Keys) == 0 {
				fmt.Fprintln(stdout(c), "no vendor key is trusted: no license can be enrolled (triadctl vendor trust add VENDOR.pub)")
				return
			}
			w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
			tableHeader(c, w, "KEY ID\tPUBLIC KEY")
			for _, k := range r.Keys {
				fmt.Fprintf(w, "%s\t%s\n", k.KeyId, hex.EncodeToString(k.PublicKey))
			}
			w.Flush()
		}
	}
	return &cli.Command{
		Name:  "trust",
		Usage: "the vendor public keys the cluster verifies licenses with (replicated)",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the trusted vendor keys",
				Action: func(c *cli.Context) error {
					return show(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.VendorTrustListResponse, error) {
						return a.VendorTrustList(ctx, &triadv1.VendorTrustListRequest{Header: h})
					}, table(c))
				},
			},
			{
				Name:      "add",
				Usage:     "trust one more vendor public key (full mode)",
				ArgsUsage: "VENDOR.pub",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("give one public key file: triadctl vendor trust add VENDOR.pub")
					}
					data, err := os.ReadFile(c.Args().First())
					if err != nil {
						return fmt.Errorf("read vendor key: %w", err)
					}
					if _, err := license.ParsePublicKey(data); err != nil {
						return fmt.Errorf("%s: %w", c.Args().First(), err)
					}
					return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.VendorTrustListResponse, error) {
						return a.VendorTrustAdd(ctx, &triadv1.VendorTrustAddRequest{Header: h, PublicKeyFile: data})
					}, table(c))
				},
			},
			{
				Name:      "remove",
				Usage:     "stop trusting a vendor key (full mode); licenses it signed stay enrolled",
				ArgsUsage: "KEY-ID|VENDOR.pub",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("give one key id or public key file: triadctl vendor trust remove KEY-ID (see `vendor trust list`)")
					}
					id := c.Args().First()
					if data, err := os.ReadFile(id); err == nil {
						pub, err := license.ParsePublicKey(data)
						if err != nil {
							return fmt.Errorf("%s: %w", id, err)
						}
						id = license.KeyID(pub)
					}
					return show(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.VendorTrustListResponse, error) {
						return a.VendorTrustRemove(ctx, &triadv1.VendorTrustRemoveRequest{Header: h, KeyId: id})
					}, table(c))
				},
			},
		},
	}
}
