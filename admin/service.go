package admin

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// ProtocolVersion is the admin protocol spoken by this triadctl and served
// by this member. A triadctl older than the server is refused.
const ProtocolVersion = 1

// Backend is what a member offers the admin service; package server
// implements it. Keeping the service here lets session and policy rules
// live next to the CLI that uses them.
type Backend interface {
	ServerShow(ctx context.Context) *triadv1.ServerShowResponse
	FormCluster(ctx context.Context, members []string, standalone bool) (*triadv1.ClusterCreateResponse, error)
	ClusterStatus(ctx context.Context) *triadv1.ClusterStatusResponse
	EnrollLicense(ctx context.Context, file []byte) (*triadv1.LicenseInfo, error)
	Licenses(ctx context.Context) []*triadv1.LicenseInfo
	Usage(ctx context.Context, consistent bool) ([]*triadv1.FeatureUsage, error)
	Leases(ctx context.Context) []*triadv1.Lease
}

// Service implements the Admin gRPC service on top of a Backend.
type Service struct {
	triadv1.UnimplementedAdminServer
	b       Backend
	version string
}

// NewService returns the admin service of a member running version.
func NewService(b Backend, version string) *Service { return &Service{b: b, version: version} }

// maxLicenseFile bounds an enrolled file (a license is a few kilobytes).
const maxLicenseFile = 1 << 20

func (s *Service) check(h *triadv1.AdminHeader) error {
	if v := h.GetProtocolVersion(); v < ProtocolVersion {
		return status.Errorf(codes.FailedPrecondition, "triadctl admin protocol %d is older than this server's (%d, server version %s): upgrade triadctl", v, ProtocolVersion, s.version)
	}
	return nil
}

func (s *Service) ServerShow(ctx context.Context, req *triadv1.ServerShowRequest) (*triadv1.ServerShowResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	return s.b.ServerShow(ctx), nil
}

func (s *Service) ClusterCreate(ctx context.Context, req *triadv1.ClusterCreateRequest) (*triadv1.ClusterCreateResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	return s.b.FormCluster(ctx, req.GetMembers(), req.GetStandalone())
}

func (s *Service) ClusterStatus(ctx context.Context, req *triadv1.ClusterStatusRequest) (*triadv1.ClusterStatusResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	return s.b.ClusterStatus(ctx), nil
}

func (s *Service) LicenseEnroll(ctx context.Context, req *triadv1.LicenseEnrollRequest) (*triadv1.LicenseEnrollResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	if n := len(req.GetLicenseFile()); n == 0 || n > maxLicenseFile {
		return nil, status.Errorf(codes.InvalidArgument, "license file is %d bytes; expected a .lic file of 1 byte to 1 MiB", n)
	}
	l, err := s.b.EnrollLicense(ctx, req.GetLicenseFile())
	if err != nil {
		return nil, err
	}
	return &triadv1.LicenseEnrollResponse{License: l}, nil
}

func (s *Service) LicenseList(ctx context.Context, req *triadv1.LicenseListRequest) (*triadv1.LicenseListResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	return &triadv1.LicenseListResponse{Licenses: s.b.Licenses(ctx)}, nil
}

func (s *Service) UsageFeatures(ctx context.Context, req *triadv1.UsageFeaturesRequest) (*triadv1.FeaturesResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	rows, err := s.b.Usage(ctx, req.GetConsistent())
	if err != nil {
		return nil, err
	}
	return &triadv1.FeaturesResponse{Features: rows}, nil
}

func (s *Service) UsageLeases(ctx context.Context, req *triadv1.UsageLeasesRequest) (*triadv1.UsageLeasesResponse, error) {
	if err := s.check(req.GetHeader()); err != nil {
		return nil, err
	}
	return &triadv1.UsageLeasesResponse{Leases: s.b.Leases(ctx)}, nil
}
