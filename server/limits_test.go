package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// A batcher closes a group before its encoded ops would pass maxBytes; the
// submission that did not fit starts the next group, and a single
// submission larger than the limit still goes (alone).
func TestBatcherMaxBytesBoundsGroup(t *testing.T) {
	f := newFakeFlush(t, true)
	b := newBatcher(1024, 1, f.flush)
	one := opsSize([]*fsmpb.Op{grantOp("w0")})
	b.maxBytes = 3 * one
	startBatcher(t, b)

	first := submitAsync(context.Background(), b, "first")
	f.waitEntered(t, 1)
	const n = 8
	var chans []<-chan outcome
	for i := 0; i < n; i++ {
		chans = append(chans, submitAsync(context.Background(), b, fmt.Sprintf("w%d", i)))
	}
	waitQueued(t, b, n-1) // the batcher holds one, waiting for the flush slot
	big := submitAsync(context.Background(), b, "b0", "b1", "b2", "b3", "b4")
	waitQueued(t, b, n)
	f.open()
	checkEcho(t, await(t, first))
	for _, ch := range chans {
		checkEcho(t, await(t, ch))
	}
	checkEcho(t, await(t, big))
	var sizes []string
	for _, g := range f.snapshot() {
		sizes = append(sizes, fmt.Sprint(len(g)))
	}
	if got := strings.Join(sizes, " "); got != "1 3 3 2 5" {
		t.Fatalf("group sizes %s, want 1 3 3 2 5 (3 ops fit in maxBytes; the oversized submission alone)", got)
	}
}

// Limits at the edge: too many lease ids or too many bytes in one Licensing
// request, and oversized forwarded batches, are INVALID_ARGUMENT naming the
// limit, before anything is proposed.
func TestLicensingRequestSizeLimits(t *testing.T) {
	l := &licensingService{s: &Server{}}
	ctx := context.Background()
	check := func(name string, err error, msg string) {
		t.Helper()
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), msg) {
			t.Errorf("%s: %v %q, want InvalidArgument containing %q", name, st.Code(), st.Message(), msg)
		}
	}
	_, err := l.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: make([]uint64, maxLeaseIDs+1)})
	check("Renew with too many ids", err, fmt.Sprintf("%d lease ids in one call; at most %d", maxLeaseIDs+1, maxLeaseIDs))

	huge := make([]uint64, maxLeaseIDs)
	for i := range huge {
		huge[i] = 1<<63 + uint64(i) // 10-byte varints: ~100 KB
	}
	_, err = l.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: huge})
	check("Renew over the byte limit", err, fmt.Sprintf("over the limit of %d bytes per request", maxRequestBytes))
	_, err = l.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: huge})
	check("Release over the byte limit", err, fmt.Sprintf("over the limit of %d bytes per request", maxRequestBytes))

	// The biggest realistic request fits: maxLeaseIDs ids below 2^28.
	ok := make([]uint64, maxLeaseIDs)
	for i := range ok {
		ok[i] = 1<<27 + uint64(i)
	}
	if _, err := checkOpsSize([]*fsmpb.Op{{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: ok}}}}, false); err != nil {
		t.Fatalf("a renew of %d realistic ids refused: %v", maxLeaseIDs, err)
	}

	// Forwarded batches: at most maxEntryOps ops and maxEntryBytes bytes.
	many := make([]*fsmpb.Op, maxEntryOps+1)
	for i := range many {
		many[i] = grantOp("r")
	}
	_, err = (&peerService{s: &Server{}}).Forward(ctx, forwardOf(many))
	check("forwarded batch with too many ops", err, fmt.Sprintf("over the limit of %d ops and %d bytes per batch", maxEntryOps, maxEntryBytes))
	var fat []*fsmpb.Op
	for i := 0; i < 20; i++ {
		fat = append(fat, &fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: huge}}})
	}
	_, err = (&peerService{s: &Server{}}).Forward(ctx, forwardOf(fat))
	check("forwarded batch over the byte limit", err, "bytes per batch")
}

func forwardOf(ops []*fsmpb.Op) *peerpb.ForwardRequest {
	return &peerpb.ForwardRequest{Batch: &fsmpb.Batch{Ops: ops}}
}

// opSize answers what proto.Size does for every kind of op, with unknown
// fields (a newer forwarder's) and empty members too: the batchers' byte
// limit and the forwarded-batch check rely on it.
func TestOpSizeMatchesProto(t *testing.T) {
	withUnknown := grantOp("u1")
	withUnknown.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
	ops := []*fsmpb.Op{
		grantOp("g1"),
		{Op: &fsmpb.Op_Grant{Grant: &fsmpb.Grant{RequestId: strings.Repeat("r", 200), Feature: "cad", Count: 3, User: "alice", Host: "ws1", Secret: make([]byte, 16), TtlMs: 30000}}},
		{Op: &fsmpb.Op_Grant{}},
		{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: []uint64{1, 1 << 40, 77}, Secrets: [][]byte{make([]byte, 16)}, IdleMs: []int64{0, 5, 1 << 33}}}},
		{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{}}},
		{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{9}, Secrets: [][]byte{make([]byte, 16)}}}},
		{Op: &fsmpb.Op_Borrow{Borrow: &fsmpb.Borrow{LeaseId: 4, DurationMs: 5000}}},
		{Op: &fsmpb.Op_AdminRelease{AdminRelease: &fsmpb.AdminRelease{LeaseId: 3, SessionId: "s"}}},
		{Op: &fsmpb.Op_Dequeue{Dequeue: &fsmpb.Dequeue{RequestId: "q", ClientId: "c"}}},
		withUnknown,
		{},
	}
	for i, op := range ops {
		if got, want := opSize(op), proto.Size(op); got != want {
			t.Errorf("op %d (%T): opSize %d, proto.Size %d", i, op.GetOp(), got, want)
		}
	}
	b, err := proto.Marshal(&fsmpb.Batch{Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	if got := opsSize(ops); got != len(b) {
		t.Errorf("opsSize %d, encoded Batch %d bytes", got, len(b))
	}
}
