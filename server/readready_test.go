package server

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/peerpb"
)

// Until the new leader's barrier has committed (consistentReady), a
// consistent read is refused, retryably, rather than answered with a
// commit index that may predate what the previous leader acknowledged.
func TestConsistentReadsWaitForTheBarrier(t *testing.T) {
	s := &Server{}
	if _, err := s.leaderReadIndex(); !errors.Is(err, ErrNotReadyForReads) {
		t.Fatalf("read index before the barrier: %v, want ErrNotReadyForReads", err)
	}
	if !retryable(ErrNotReadyForReads) {
		t.Fatal("ErrNotReadyForReads is not retried (route would give up at once)")
	}
	_, err := (&peerService{s: s}).Info(context.Background(), &peerpb.InfoRequest{ReadIndex: true})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Peer.Info read_index before the barrier: %v, want Unavailable", err)
	}
}
