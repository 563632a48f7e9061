package server

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/triadlm/triad/proto/fsmpb"
)

// A follower forwards its batches over Peer.ForwardStream; to a leader
// that does not know the stream (an older triadd answers UNIMPLEMENTED)
// it falls back to unary Forward calls and keeps to them, and either way
// every op is answered by the leader's state machine.
func TestForwardStreamAndUnaryFallback(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("older leader %v", old), func(t *testing.T) {
			ms := startMembersWith(t, func(c *Config) { c.TestNoForwardStream = old }, nil, nil, nil)
			if err := form(t, ms); err != nil {
				t.Fatal(err)
			}
			f := leaderAndFollowers(t, ms)[1].s
			for i := range 3 {
				g := &fsmpb.Grant{RequestId: fmt.Sprint("fwd-", i), ClientId: "c", Feature: "nothing", Count: 1}
				res, err := f.submitOps(ctxT(t), []*fsmpb.Op{{Op: &fsmpb.Op_Grant{Grant: g}}}, false)
				if err != nil {
					t.Fatalf("forwarded checkout %d: %v", i, err)
				}
				if res[0].GetCode() != fsmpb.Code_UNKNOWN_FEATURE {
					t.Fatalf("forwarded checkout %d answered %v, want the state machine's UNKNOWN_FEATURE", i, res[0])
				}
			}
			stream := testutil.ToFloat64(f.metrics.fwdCalls.WithLabelValues("stream"))
			unary := testutil.ToFloat64(f.metrics.fwdCalls.WithLabelValues("unary"))
			if !old && (stream != 3 || unary != 0) {
				t.Fatalf("to a leader with the stream: %v batches on it, %v unary, want 3 and 0", stream, unary)
			}
			if old && (stream != 0 || unary != 3) {
				t.Fatalf("to an older leader: %v batches on the stream, %v unary, want 0 and 3", stream, unary)
			}
		})
	}
}
