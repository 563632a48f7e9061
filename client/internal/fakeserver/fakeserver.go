// Package fakeserver is an in-process stand-in for Triad license servers,
// so that the examples of package client run as tests with checked output.
// It serves the Licensing gRPC service on loopback ports from one shared
// state (as a cluster's members share the replicated state): seats per
// feature, idempotent request ids (scoped by client id), lease secrets
// (needed to renew, release, extend or return, as on a real member), grace
// periods and borrow limits. It has
// no Raft, no license files and no TTL expiry, and it is not part of the
// client's API.
package fakeserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/pki"
)

// protocolVersion is the licensing protocol a Server speaks by default:
// the one package client speaks (client.ProtocolVersion).
const protocolVersion = 2

// Feature is what the stand-in's "license" grants.
type Feature struct {
	Name string
	// Version is the highest version granted.
	Version uint32
	Seats   uint32
	// Grace is sent to clients as the feature's grace period (0: 2 h).
	Grace time.Duration
	// MaxBorrow is the longest borrow allowed (0: no borrowing).
	MaxBorrow time.Duration
}

// Server is a group of members serving one state: the three members of a
// cluster, or one standalone backup server.
type Server struct {
	mu        sync.Mutex
	features  map[string]Feature
	leases    map[uint64]*triadv1.Lease
	secrets   map[uint64][]byte
	byRequest map[string]uint64 // client id + "\x00" + request id → lease id
	nextID    uint64
	down      bool
	protocol  uint32

	addrs []string
	srvs  []*grpc.Server
	dir   string // holds ca.crt
}

var (
	caOnce sync.Once
	theCA  *pki.CA
	caErr  error
)

// Start starts members members on 127.0.0.1 with free ports.
func Start(members int, features ...Feature) (*Server, error) {
	s := &Server{
		features: map[string]Feature{}, leases: map[uint64]*triadv1.Lease{}, secrets: map[uint64][]byte{}, byRequest: map[string]uint64{},
		protocol: protocolVersion,
	}
	for _, f := range features {
		s.features[f.Name] = f
	}
	// Members serve TLS under a CA made for this process's stand-ins (one
	// CA, so a stand-in cluster and its backup verify alike, as with a CA
	// bundle naming both); CAFile is what a client verifies them with.
	caOnce.Do(func() { theCA, caErr = pki.NewCA("fakeserver CA", 24*time.Hour) })
	ca, err := theCA, caErr
	if err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "triad-fakeserver-"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.CAFile(), ca.CertPEM(), 0o644); err != nil {
		s.Close()
		return nil, err
	}
	is, err := ca.Issue(pki.Member, "fakeserver", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		s.Close()
		return nil, err
	}
	kp, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		s.Close()
		return nil, err
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12})
	for range members {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, err
		}
		srv := grpc.NewServer(grpc.Creds(creds))
		triadv1.RegisterLicensingServer(srv, &member{s: s, addr: lis.Addr().String()})
		go srv.Serve(lis)
		s.addrs = append(s.addrs, lis.Addr().String())
		s.srvs = append(s.srvs, srv)
	}
	return s, nil
}

// CAFile is the PEM file of the CA the members' certificates chain to.
func (s *Server) CAFile() string { return filepath.Join(s.dir, "ca.crt") }

// Addrs are the members' licensing addresses, for client.New or
// client.WithBackup.
func (s *Server) Addrs() []string { return append([]string(nil), s.addrs...) }

// SetDown makes every member answer UNAVAILABLE (true), as when none can be
// reached, or serve again (false). The leases are kept meanwhile.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// SetProtocolVersion makes the members speak another licensing protocol
// version, as after an upgrade of the servers.
func (s *Server) SetProtocolVersion(v uint32) {
	s.mu.Lock()
	s.protocol = v
	s.mu.Unlock()
}

// InUse is the number of seats of feature held by leases (borrowed ones
// included).
func (s *Server) InUse(feature string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUseLocked(feature)
}

// Close stops every member.
func (s *Server) Close() {
	for _, srv := range s.srvs {
		srv.Stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func (s *Server) inUseLocked(feature string) uint32 {
	var n uint32
	for _, l := range s.leases {
		if l.Feature == feature {
			n += l.Count
		}
	}
	return n
}

// gate answers UNAVAILABLE while down and FAILED_PRECONDITION for another
// protocol version, with the message of a real member.
func (s *Server) gate(v uint32) error {
	if s.down {
		return status.Error(codes.Unavailable, "no leader reachable right now: retry on another member")
	}
	if v != s.protocol {
		return status.Errorf(codes.FailedPrecondition, "license protocol version is invalid: client %d, server %d", v, s.protocol)
	}
	return nil
}

type member struct {
	triadv1.UnimplementedLicensingServer
	s    *Server
	addr string
}

func (m *member) Checkout(ctx context.Context, req *triadv1.CheckoutRequest) (*triadv1.CheckoutResponse, error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gate(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	l, err := s.grantLocked(req, m.addr)
	if err != nil {
		return nil, err
	}
	return &triadv1.CheckoutResponse{Lease: proto.Clone(l).(*triadv1.Lease), LeaseSecret: s.secrets[l.LeaseId]}, nil
}

// ownedLocked reports whether secret is lease id's secret.
func (s *Server) ownedLocked(id uint64, secret []byte) bool {
	return bytes.Equal(s.secrets[id], secret)
}

func secretAt(secrets [][]byte, i int) []byte {
	if i < len(secrets) {
		return secrets[i]
	}
	return nil
}

func (s *Server) grantLocked(req *triadv1.CheckoutRequest, via string) (*triadv1.Lease, error) {
	if req.GetFeature() == "" || req.GetRequestId() == "" || req.GetClientId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a checkout needs a feature, a request id and a client id")
	}
	key := req.GetClientId() + "\x00" + req.GetRequestId()
	if id, ok := s.byRequest[key]; ok {
		if l, ok := s.leases[id]; ok {
			return l, nil
		}
	}
	f, ok := s.features[req.GetFeature()]
	if !ok || req.GetVersion() > f.Version {
		return nil, status.Errorf(codes.NotFound, "no license grants %s v%d", req.GetFeature(), req.GetVersion())
	}
	count := max(req.GetCount(), 1)
	if used := s.inUseLocked(f.Name); used+count > f.Seats {
		return nil, status.Errorf(codes.ResourceExhausted, "no seat left for %s v %d (%d of %d in use)", f.Name, req.GetVersion(), used, f.Seats)
	}
	ttl := req.GetTtlSeconds()
	if ttl == 0 {
		ttl = 30
	}
	now := time.Now()
	s.nextID++
	l := &triadv1.Lease{
		LeaseId: s.nextID, RequestId: req.GetRequestId(), Feature: f.Name, Version: req.GetVersion(), Count: count,
		User: req.GetUser(), Host: req.GetHost(), Pid: req.GetPid(), ClientId: req.GetClientId(),
		GrantedUnixMs: now.UnixMilli(), RenewedUnixMs: now.UnixMilli(),
		ExpiresUnixMs: now.Add(time.Duration(ttl) * time.Second).UnixMilli(), TtlSeconds: ttl,
		FencingIndex: 100 + s.nextID, ViaMember: via, GraceSeconds: uint32(f.Grace / time.Second),
	}
	s.leases[l.LeaseId] = l
	s.secrets[l.LeaseId] = []byte(rand.Text())
	s.byRequest[key] = l.LeaseId
	return l, nil
}

func (m *member) Renew(ctx context.Context, req *triadv1.RenewRequest) (*triadv1.RenewResponse, error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gate(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	resp := &triadv1.RenewResponse{}
	now := time.Now()
	for i, id := range req.GetLeaseIds() {
		l, ok := s.leases[id]
		if !ok || l.Borrowed {
			resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Error: fmt.Sprintf("lease %d not found", id)})
			continue
		}
		if !s.ownedLocked(id, secretAt(req.GetLeaseSecrets(), i)) {
			resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Error: fmt.Sprintf("lease %d: wrong lease secret", id)})
			continue
		}
		l.RenewedUnixMs = now.UnixMilli()
		l.ExpiresUnixMs = now.Add(time.Duration(l.TtlSeconds) * time.Second).UnixMilli()
		resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Ok: true, TtlSeconds: l.TtlSeconds, ExpiresUnixMs: l.ExpiresUnixMs})
	}
	return resp, nil
}

func (m *member) Release(ctx context.Context, req *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gate(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	resp := &triadv1.ReleaseResponse{}
	for i, id := range req.GetLeaseIds() {
		_, ok := s.leases[id]
		if ok && !s.ownedLocked(id, secretAt(req.GetLeaseSecrets(), i)) {
			resp.Results = append(resp.Results, &triadv1.ReleaseResult{LeaseId: id, Error: fmt.Sprintf("lease %d: wrong lease secret", id)})
			continue
		}
		delete(s.leases, id)
		resp.Results = append(resp.Results, &triadv1.ReleaseResult{LeaseId: id, Released: ok})
	}
	return resp, nil
}

func (m *member) ReturnBorrow(ctx context.Context, req *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	return m.Release(ctx, req)
}

func (m *member) Borrow(ctx context.Context, req *triadv1.BorrowRequest) (*triadv1.CheckoutResponse, error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gate(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	d := time.Duration(req.GetDurationSeconds()) * time.Second
	feature := req.GetCheckout().GetFeature()
	l := s.leases[req.GetLeaseId()]
	if req.GetLeaseId() != 0 {
		if l == nil || !l.Borrowed {
			return nil, status.Errorf(codes.NotFound, "no borrowed lease %d", req.GetLeaseId())
		}
		if !s.ownedLocked(l.LeaseId, req.GetLeaseSecret()) {
			return nil, status.Errorf(codes.PermissionDenied, "lease %d: wrong lease secret", l.LeaseId)
		}
		feature = l.Feature
	}
	if f, ok := s.features[feature]; ok && d > f.MaxBorrow {
		if f.MaxBorrow == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "%s cannot be borrowed: its license allows no offline use", feature)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "%s can be borrowed for at most %s; asked for %s", feature, f.MaxBorrow, d)
	}
	if l == nil {
		if req.GetCheckout() == nil {
			return nil, status.Error(codes.InvalidArgument, "a new borrow needs checkout (feature, request_id...)")
		}
		var err error
		if l, err = s.grantLocked(req.GetCheckout(), m.addr); err != nil {
			return nil, err
		}
		l.Borrowed = true
	}
	l.ExpiresUnixMs = time.Now().Add(d).UnixMilli()
	return &triadv1.CheckoutResponse{Lease: proto.Clone(l).(*triadv1.Lease), LeaseSecret: s.secrets[l.LeaseId]}, nil
}

func (m *member) Features(ctx context.Context, req *triadv1.FeaturesRequest) (*triadv1.FeaturesResponse, error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gate(req.GetProtocolVersion()); err != nil {
		return nil, err
	}
	resp := &triadv1.FeaturesResponse{}
	for _, name := range slices.Sorted(maps.Keys(s.features)) {
		f := s.features[name]
		resp.Features = append(resp.Features, &triadv1.FeatureUsage{Feature: f.Name, Version: f.Version, Capacity: f.Seats, InUse: s.inUseLocked(f.Name)})
	}
	return resp, nil
}
