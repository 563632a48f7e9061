package fsm

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triadlm/triad/proto/fsmpb"
)

// TestLeaseFormKeepsEveryField fills every field of fsmpb.Lease, converts
// it to the state's form and back, and wants the same message: a field
// added to the message but not to lease would be lost in snapshots and
// answers, and fails here.
func TestLeaseFormKeepsEveryField(t *testing.T) {
	m := &fsmpb.Lease{}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString(fmt.Sprintf("%s-value", fd.Name()))
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes([]byte(fmt.Sprintf("%s-bytes", fd.Name())))
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.Uint32Kind:
			v = protoreflect.ValueOfUint32(uint32(100 + i))
		case protoreflect.Uint64Kind:
			v = protoreflect.ValueOfUint64(uint64(1000 + i))
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64(int64(10_000 + i))
		default:
			t.Fatalf("field %s has kind %v, which this test does not fill: extend it and lease", fd.Name(), fd.Kind())
		}
		r.Set(fd, v)
	}
	var in interner
	got := leaseFromProto(m, &in).toProto()
	if !proto.Equal(got, m) {
		t.Fatalf("round trip through the state's form lost fields:\n got %v\nwant %v", got, m)
	}
	// The answer's secret is a copy: a caller changing it changes nothing held.
	l := leaseFromProto(m, &in)
	p := l.toProto()
	p.Secret[0] ^= 0xff
	if l.Secret[0] == p.Secret[0] {
		t.Fatal("toProto shares the secret's bytes with the held lease")
	}
}

// TestLeasesShareRepeatedStrings checks that leases granted by separate
// commands hold one copy of the strings they repeat (user, host, client
// id, feature), not the copies their decoded commands brought, and that
// the request id stays each lease's own.
func TestLeasesShareRepeatedStrings(t *testing.T) {
	h := queueHarness(t, 10)
	// Each op is marshalled and decoded by the harness, as a log entry is.
	a := h.mustCode(t0, plainOp("r1", "ann", 1), fsmpb.Code_OK).Lease
	b := h.mustCode(t0, plainOp("r2", "ann", 1), fsmpb.Code_OK).Lease
	la, lb := h.f.s.leases[a.Id], h.f.s.leases[b.Id]
	for _, f := range []struct {
		name string
		x, y string
	}{
		{"user", la.User, lb.User}, {"host", la.Host, lb.Host},
		{"client id", la.ClientId, lb.ClientId}, {"feature", la.Feature, lb.Feature},
	} {
		if f.x != f.y || f.x == "" {
			t.Fatalf("%s: %q and %q, want the same non-empty value", f.name, f.x, f.y)
		}
		if unsafe.StringData(f.x) != unsafe.StringData(f.y) {
			t.Errorf("%s %q: two copies held, want one shared", f.name, f.x)
		}
	}
	if la.RequestId == lb.RequestId {
		t.Fatalf("request ids %q and %q, want distinct", la.RequestId, lb.RequestId)
	}
}

// TestInternerStaysBounded checks that the table of shared strings is
// emptied once it outgrows its limit, so strings of long-gone leases
// (client ids of processes that ended) do not pile up.
func TestInternerStaysBounded(t *testing.T) {
	var in interner
	for i := range 3 * internFloor {
		in.trim(0)
		in.get(fmt.Sprint("client-", i))
		if len(in.m) > internFloor+1 {
			t.Fatalf("after %d strings the table holds %d, want at most %d", i+1, len(in.m), internFloor+1)
		}
	}
	in.trim(10 * internFloor)
	if len(in.m) == 0 {
		t.Fatal("trim emptied a table under its limit")
	}
	if got := in.get(""); got != "" || len(in.m) > internFloor+1 {
		t.Fatalf("get(\"\") = %q, table %d", got, len(in.m))
	}
}

// TestRequestRecordsSurviveSnapshot checks that the state's request
// records (a live grant, an ended one, a refusal) come back from a
// snapshot with the ids they are stored under and every field.
func TestRequestRecordsSurviveSnapshot(t *testing.T) {
	h := queueHarness(t, 1)
	l := h.mustCode(t0, plainOp("r1", "ann", 1), fsmpb.Code_OK).Lease
	h.mustCode(t0+second, plainOp("r2", "bob", 1), fsmpb.Code_NO_SEAT)
	h.mustCode(t0+2*second, releaseSecretOp(l), fsmpb.Code_OK)
	l2 := h.mustCode(t0+3*second, plainOp("r3", "cy", 1), fsmpb.Code_OK).Lease
	// A request id too long to pack: the record sits in the table's
	// second map and travels the same way.
	longReq := strings.Repeat("q", 128)
	h.mustCode(t0+4*second, plainOp(longReq, "dan", 1), fsmpb.Code_NO_SEAT)
	before := map[requestKey]requestRecord{}
	for k, r := range h.f.s.requests.all() {
		before[k] = r
	}
	if len(before) != 4 || len(h.f.s.requests.long) != 1 {
		t.Fatalf("%d request records (%d long), want 4 (1 long)", len(before), len(h.f.s.requests.long))
	}
	s, err := stateFromSnapshot(h.f.s.toSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	if s.requests.len() != len(before) {
		t.Fatalf("restored %d request records, want %d", s.requests.len(), len(before))
	}
	for k, want := range before {
		got, ok := s.requests.get(k)
		if !ok || got != want {
			t.Fatalf("request %+v: restored %+v, want %+v", k, got, want)
		}
	}
	longKey := requestKey{client: "client-dan", request: longReq}
	if s.denied[longKey] == "" || s.denied[longKey] != h.f.s.denied[longKey] {
		t.Fatalf("refusal message of the long request restored as %q, want %q", s.denied[longKey], h.f.s.denied[longKey])
	}
	if got := s.leases[l2.Id]; got == nil || !proto.Equal(got.toProto(), h.f.s.leases[l2.Id].toProto()) {
		t.Fatalf("lease %d restored as %+v", l2.Id, got)
	}
}
