package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/triadv1"
)

// fakeCluster is the shared state behind the fake members: one seat pool
// and one request-id table (scoped by client id), as the Raft-replicated
// FSM would be, so that a retry on another member sees the first attempt's
// grant. Like the cluster, it gives each lease a secret and refuses to
// renew or release a lease without it.
type fakeCluster struct {
	mu        sync.Mutex
	capacity  map[string]uint32 // feature → seats (any version ≤ maxVer)
	maxVer    uint32
	expired   map[string]bool // feature → license expired
	leases    map[uint64]*triadv1.Lease
	secrets   map[uint64][]byte
	byRequest map[string]uint64 // client id + "\x00" + request id → lease id
	refused   int               // renewals and releases refused for a wrong secret
	nextID    uint64
	index     uint64
	grace     uint32 // grace_seconds put in every lease (0: not sent)
	members   []*fakeMember
	// idleLimitMs > 0: a renewal reporting a lease idle that long releases
	// it with idle_timeout, as a TIMEOUT rule would.
	idleLimitMs int64
	lastIdle    map[uint64]int64 // lease id → idle_ms of its last renewal
	queue       []string         // queued checkouts' keys, first served first
	cancelled   []string         // request ids that left the queue by CancelQueued
	// grantOnCancel: CancelQueued finds the waiter granted (as if a seat
	// freed between its last poll and the cancel).
	grantOnCancel bool
}

// fakeMember is one member's Licensing endpoint, with switches that make
// it misbehave and records of what it was asked.
type fakeMember struct {
	triadv1.UnimplementedLicensingServer
	cl   *fakeCluster
	addr string
	srv  *grpc.Server

	mu                sync.Mutex
	unavailable       bool   // answer UNAVAILABLE to everything
	hang              bool   // block every call until the client gives up
	hangAfterCheckout bool   // grant, then block: the client times out not knowing
	hangAfterRenew    bool   // renew, then block: the client times out not knowing
	leader            string // hint put in responses
	failWith          error  // answer every call with this error
	protocol          uint32 // licensing protocol spoken; 0: ProtocolVersion
	checkouts         []*triadv1.CheckoutRequest
	renews            [][]uint64
	renewTimes        []time.Time // when each renewal arrived
	releases          [][]uint64
	features          int
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	t.Helper()
	return newFakeClusterWith(t, n, func(srv *grpc.Server, m *fakeMember) { triadv1.RegisterLicensingServer(srv, m) })
}

// newFakeClusterWith registers each member's Licensing service with
// register (a wrapper may serve it: session_test.go).
func newFakeClusterWith(t *testing.T, n int, register func(*grpc.Server, *fakeMember)) *fakeCluster {
	t.Helper()
	cl := &fakeCluster{
		capacity:  map[string]uint32{"cad": 100, "solo": 1, "expired": 5},
		maxVer:    5,
		expired:   map[string]bool{"expired": true},
		leases:    map[uint64]*triadv1.Lease{},
		secrets:   map[uint64][]byte{},
		byRequest: map[string]uint64{},
		index:     100,
	}
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &fakeMember{cl: cl, addr: lis.Addr().String(), srv: grpc.NewServer()}
		register(m.srv, m)
		go m.srv.Serve(lis)
		t.Cleanup(m.srv.Stop)
		cl.members = append(cl.members, m)
	}
	return cl
}

func (cl *fakeCluster) addrs() []string {
	var a []string
	for _, m := range cl.members {
		a = append(a, m.addr)
	}
	return a
}

func (cl *fakeCluster) inUse(feature string) uint32 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.inUseLocked(feature)
}

func (cl *fakeCluster) inUseLocked(feature string) uint32 {
	var n uint32
	for _, l := range cl.leases {
		if l.Feature == feature {
			n += l.Count
		}
	}
	return n
}

// drop forgets a lease, as an expiry or a forced release would.
func (cl *fakeCluster) drop(id uint64) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	delete(cl.leases, id)
}

// setAll flips a switch on every member.
func (cl *fakeCluster) setAll(f func(m *fakeMember)) {
	for _, m := range cl.members {
		m.set(f)
	}
}

func (cl *fakeCluster) numLeases() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.leases)
}

// stop kills a member: its server stops and its listener closes.
func (m *fakeMember) stop() { m.srv.Stop() }

func (m *fakeMember) set(f func(m *fakeMember)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// gate applies the unavailable/failWith/hang switches and the member's
// protocol version check; it returns the error to answer with, or nil to
// serve the call.
func (m *fakeMember) gate(ctx context.Context, protocol uint32) (string, error) {
	m.mu.Lock()
	unavailable, hang, leader, failWith, serverProtocol := m.unavailable, m.hang, m.leader, m.failWith, m.protocol
	m.mu.Unlock()
	if unavailable {
		return "", status.Error(codes.Unavailable, "no leader")
	}
	if failWith != nil {
		return "", failWith
	}
	if hang {
		<-ctx.Done()
		return "", status.FromContextError(ctx.Err()).Err()
	}
	if serverProtocol == 0 {
		serverProtocol = ProtocolVersion
	}
	if protocol != serverProtocol {
		return "", status.Errorf(codes.FailedPrecondition, "license protocol version is invalid: client %d, server %d", protocol, serverProtocol)
	}
	return leader, nil
}

func (m *fakeMember) Checkout(ctx context.Context, req *triadv1.CheckoutRequest) (*triadv1.CheckoutResponse, error) {
	m.mu.Lock()
	m.checkouts = append(m.checkouts, req)
	hangAfter := m.hangAfterCheckout
	m.mu.Unlock()
	leader, err := m.gate(ctx, req.ProtocolVersion)
	if err != nil {
		return nil, err
	}
	if q := m.cl.waitTurn(req); q != nil {
		q.Leader = leader
		return q, nil
	}
	lease, secret, err := m.cl.grant(req, m.addr)
	if err != nil {
		return nil, err
	}
	if hangAfter {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &triadv1.CheckoutResponse{Lease: lease, Leader: leader, LeaseSecret: secret}, nil
}

func (cl *fakeCluster) grant(req *triadv1.CheckoutRequest, via string) (*triadv1.Lease, []byte, error) {
	if req.Feature == "" || req.RequestId == "" || req.ClientId == "" || req.Count > 1000 {
		return nil, nil, status.Error(codes.InvalidArgument, "bad checkout request")
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	key := req.ClientId + "\x00" + req.RequestId
	if id, ok := cl.byRequest[key]; ok {
		if l, ok := cl.leases[id]; ok {
			return cloneLease(l), cl.secrets[id], nil
		}
	}
	capacity, ok := cl.capacity[req.Feature]
	if !ok || req.Version > cl.maxVer {
		return nil, nil, status.Errorf(codes.NotFound, "no license for %s v%d", req.Feature, req.Version)
	}
	if cl.expired[req.Feature] {
		return nil, nil, status.Errorf(codes.PermissionDenied, "license for %s expired", req.Feature)
	}
	count := max(req.Count, 1)
	if used := cl.inUseLocked(req.Feature); used+count > capacity {
		return nil, nil, status.Errorf(codes.ResourceExhausted, "no seat left for %s v %d (%d of %d in use)", req.Feature, req.Version, used, capacity)
	}
	ttl := req.TtlSeconds
	if ttl == 0 {
		ttl = 30
	}
	cl.nextID++
	cl.index++
	l := &triadv1.Lease{
		LeaseId: cl.nextID, RequestId: req.RequestId, Feature: req.Feature, Version: req.Version,
		Count: count, User: req.User, Host: req.Host, Pid: req.Pid, ClientId: req.ClientId,
		TtlSeconds: ttl, FencingIndex: cl.index, ViaMember: via, GraceSeconds: cl.grace,
	}
	cl.leases[l.LeaseId] = l
	cl.secrets[l.LeaseId] = []byte(rand.Text())
	cl.byRequest[key] = l.LeaseId
	return cloneLease(l), cl.secrets[l.LeaseId], nil
}

// waitTurn is the cluster's queue, simplified: a queued checkout that does
// not fit, or finds others waiting, waits in FIFO order; the head is
// granted (nil answer: grant it) once its seats are free.
func (cl *fakeCluster) waitTurn(req *triadv1.CheckoutRequest) *triadv1.CheckoutResponse {
	if !req.Queue {
		return nil
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	key := req.ClientId + "\x00" + req.RequestId
	if _, granted := cl.byRequest[key]; granted {
		return nil
	}
	capacity, ok := cl.capacity[req.Feature]
	if !ok {
		return nil // refused by grant
	}
	fits := cl.inUseLocked(req.Feature)+max(req.Count, 1) <= capacity
	i := slices.Index(cl.queue, key)
	if i < 0 {
		if fits && len(cl.queue) == 0 {
			return nil
		}
		cl.queue = append(cl.queue, key)
		i = len(cl.queue) - 1
	}
	if i == 0 && fits {
		cl.queue = cl.queue[1:]
		return nil
	}
	return &triadv1.CheckoutResponse{Queued: true, QueuePosition: uint32(i + 1), QueueLength: uint32(len(cl.queue)),
		QueueDeadlineUnixMs: 1}
}

func (m *fakeMember) CancelQueued(ctx context.Context, req *triadv1.CancelQueuedRequest) (*triadv1.CancelQueuedResponse, error) {
	if _, err := m.gate(ctx, req.ProtocolVersion); err != nil {
		return nil, err
	}
	cl := m.cl
	cl.mu.Lock()
	defer cl.mu.Unlock()
	key := req.ClientId + "\x00" + req.RequestId
	if i := slices.Index(cl.queue, key); i >= 0 && cl.grantOnCancel {
		cl.queue = slices.Delete(cl.queue, i, i+1)
		cl.nextID++
		cl.leases[cl.nextID] = &triadv1.Lease{LeaseId: cl.nextID, RequestId: req.RequestId, Feature: "solo", Count: 1, ClientId: req.ClientId, TtlSeconds: 30}
		cl.secrets[cl.nextID] = []byte(rand.Text())
		cl.byRequest[key] = cl.nextID
		return &triadv1.CancelQueuedResponse{GrantedLeaseId: cl.nextID}, nil
	}
	if i := slices.Index(cl.queue, key); i >= 0 {
		cl.queue = slices.Delete(cl.queue, i, i+1)
		cl.cancelled = append(cl.cancelled, req.RequestId)
		return &triadv1.CancelQueuedResponse{Removed: true}, nil
	}
	return &triadv1.CancelQueuedResponse{GrantedLeaseId: cl.byRequest[key]}, nil
}

func (cl *fakeCluster) queueState() (queue, cancelled []string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.queue), slices.Clone(cl.cancelled)
}

// ownedLocked reports whether the i-th secret is lease id's secret, and
// counts the refusals.
func (cl *fakeCluster) ownedLocked(id uint64, secrets [][]byte, i int) bool {
	if i < len(secrets) && bytes.Equal(secrets[i], cl.secrets[id]) {
		return true
	}
	cl.refused++
	return false
}

func (cl *fakeCluster) refusedSecrets() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.refused
}

// secretOf is a lease's secret, as only its holder should know it.
func (cl *fakeCluster) secretOf(id uint64) []byte {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.secrets[id]
}

func cloneLease(l *triadv1.Lease) *triadv1.Lease {
	return proto.Clone(l).(*triadv1.Lease)
}

func (m *fakeMember) Renew(ctx context.Context, req *triadv1.RenewRequest) (*triadv1.RenewResponse, error) {
	m.mu.Lock()
	m.renews = append(m.renews, append([]uint64(nil), req.LeaseIds...))
	m.renewTimes = append(m.renewTimes, time.Now())
	hangAfter := m.hangAfterRenew
	m.mu.Unlock()
	leader, err := m.gate(ctx, req.ProtocolVersion)
	if err != nil {
		return nil, err
	}
	resp := m.cl.renew(req, leader)
	if hangAfter {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return resp, nil
}

func (cl *fakeCluster) renew(req *triadv1.RenewRequest, leader string) *triadv1.RenewResponse {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	resp := &triadv1.RenewResponse{Leader: leader}
	for i, id := range req.LeaseIds {
		l, ok := cl.leases[id]
		if !ok {
			resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Error: fmt.Sprintf("lease %d not found", id)})
			continue
		}
		var idle int64
		if i < len(req.IdleMs) {
			idle = req.IdleMs[i]
		}
		if cl.lastIdle == nil {
			cl.lastIdle = map[uint64]int64{}
		}
		cl.lastIdle[id] = idle
		if cl.idleLimitMs > 0 && idle >= cl.idleLimitMs {
			delete(cl.leases, id)
			resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, IdleTimeout: true, Error: fmt.Sprintf("lease %d was released: idle timeout", id)})
			continue
		}
		if !cl.ownedLocked(id, req.LeaseSecrets, i) {
			resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Error: fmt.Sprintf("lease %d: wrong lease secret", id)})
			continue
		}
		resp.Results = append(resp.Results, &triadv1.RenewResult{LeaseId: id, Ok: true, TtlSeconds: l.TtlSeconds, ExpiresUnixMs: 1})
	}
	return resp
}

func (m *fakeMember) Release(ctx context.Context, req *triadv1.ReleaseRequest) (*triadv1.ReleaseResponse, error) {
	m.mu.Lock()
	m.releases = append(m.releases, append([]uint64(nil), req.LeaseIds...))
	m.mu.Unlock()
	if _, err := m.gate(ctx, req.ProtocolVersion); err != nil {
		return nil, err
	}
	m.cl.mu.Lock()
	defer m.cl.mu.Unlock()
	resp := &triadv1.ReleaseResponse{}
	for i, id := range req.LeaseIds {
		_, ok := m.cl.leases[id]
		if ok && !m.cl.ownedLocked(id, req.LeaseSecrets, i) {
			resp.Results = append(resp.Results, &triadv1.ReleaseResult{LeaseId: id, Error: fmt.Sprintf("lease %d: wrong lease secret", id)})
			continue
		}
		delete(m.cl.leases, id)
		resp.Results = append(resp.Results, &triadv1.ReleaseResult{LeaseId: id, Released: ok})
	}
	return resp, nil
}

func (m *fakeMember) Features(ctx context.Context, req *triadv1.FeaturesRequest) (*triadv1.FeaturesResponse, error) {
	m.mu.Lock()
	m.features++
	m.mu.Unlock()
	if _, err := m.gate(ctx, req.ProtocolVersion); err != nil {
		return nil, err
	}
	m.cl.mu.Lock()
	defer m.cl.mu.Unlock()
	resp := &triadv1.FeaturesResponse{}
	for _, f := range []string{"cad", "expired", "solo"} {
		resp.Features = append(resp.Features, &triadv1.FeatureUsage{Feature: f, Version: m.cl.maxVer, Capacity: m.cl.capacity[f], InUse: m.cl.inUseLocked(f)})
	}
	return resp, nil
}

// Accessors copy under the lock, for polling from tests.

func (m *fakeMember) checkoutReqs() []*triadv1.CheckoutRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*triadv1.CheckoutRequest(nil), m.checkouts...)
}

func (m *fakeMember) renewCalls() [][]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]uint64(nil), m.renews...)
}

func (m *fakeMember) releaseCalls() [][]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]uint64(nil), m.releases...)
}

func (cl *fakeCluster) allRenewCalls() [][]uint64 {
	var all [][]uint64
	for _, m := range cl.members {
		all = append(all, m.renewCalls()...)
	}
	return all
}

func (cl *fakeCluster) allCheckouts() []*triadv1.CheckoutRequest {
	var all []*triadv1.CheckoutRequest
	for _, m := range cl.members {
		all = append(all, m.checkoutReqs()...)
	}
	return all
}
