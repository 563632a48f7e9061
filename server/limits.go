package server

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// Size limits of the write path, in bytes as well as in operations, so that
// no request and no Raft log entry can grow without bound: a Batch entry is
// written to every member's log and held in memory until applied.
const (
	// maxRequestBytes bounds the encoded operations of one Licensing
	// request (a Renew of maxLeaseIDs ids is at most ~50 KiB with realistic
	// lease ids; a checkout's strings are capped one by one).
	maxRequestBytes = 64 << 10
	// maxEntryBytes bounds one Batch log entry and one forwarded batch: a
	// batcher closes a group before it would grow past it.
	maxEntryBytes = 1 << 20
	// maxEntryOps bounds the operations of one Batch entry (the batchers'
	// maxOps).
	maxEntryOps = 1024
)

// opsSize is the encoded size of ops inside a Batch message.
func opsSize(ops []*fsmpb.Op) int {
	n := 0
	for _, op := range ops {
		n += protowire.SizeTag(1) + protowire.SizeBytes(opSize(op))
	}
	return n
}

// opSize is proto.Size(op), computed from the oneof's member: protobuf-go
// sizes a oneof through reflection (reflect.NewAt per call), which with
// the stack growth it set off in a fresh goroutine cost about a tenth of
// the leader's CPU under load (docs/performance.md). The Op fields' numbers
// are the ones in proto/fsm.proto; TestOpSizeMatchesProto keeps them
// honest.
func opSize(op *fsmpb.Op) int {
	var n int
	var field protowire.Number
	switch o := op.GetOp().(type) {
	case *fsmpb.Op_Grant:
		n, field = proto.Size(o.Grant), 1
	case *fsmpb.Op_Renew:
		n, field = proto.Size(o.Renew), 2
	case *fsmpb.Op_Release:
		n, field = proto.Size(o.Release), 3
	default:
		return proto.Size(op)
	}
	return protowire.SizeTag(field) + protowire.SizeBytes(n) + len(op.ProtoReflect().GetUnknown())
}

// checkOpsSize refuses a submission over the limits: one request's ops
// from a client, or a whole batch forwarded by a follower. It returns the
// encoded size, which the batchers group by.
func checkOpsSize(ops []*fsmpb.Op, forwarded bool) (int, error) {
	size := opsSize(ops)
	if forwarded {
		if len(ops) > maxEntryOps || size > maxEntryBytes {
			return 0, status.Errorf(codes.InvalidArgument, "forwarded batch of %d ops, %d bytes: over the limit of %d ops and %d bytes per batch", len(ops), size, maxEntryOps, maxEntryBytes)
		}
		return size, nil
	}
	if size > maxRequestBytes {
		return 0, status.Errorf(codes.InvalidArgument, "request is %d bytes encoded: over the limit of %d bytes per request (maxRequestBytes); send fewer lease ids per call", size, maxRequestBytes)
	}
	return size, nil
}
