package integration

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// A license remove retried with its request id, on another member, gets the
// first answer; a new request id for the same serial is a new action.
func TestAdminRequestIDRemoveRetried(t *testing.T) {
	c := formedWithLicense(t, 2)
	var lics []struct{ Serial string }
	out, err := ctlOn(t, c.members[0].addr, "--output", "json", "license", "list")
	if err != nil || json.Unmarshal([]byte(out), &lics) != nil || len(lics) != 1 {
		t.Fatalf("license list: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	remove := func(m *member, reqID string) (*triadv1.LicenseRemoveResponse, error) {
		tok := mustOpen(t, nil, "--server", m.addr, "--mode", "full")
		defer ctlOn(t, m.addr, "--session", tok, "disconnect")
		return adminClient(t, m.addr).LicenseRemove(ctx, &triadv1.LicenseRemoveRequest{Header: hdr(tok), Serial: lics[0].Serial, RequestId: reqID})
	}
	first, err := remove(c.members[0], "rm-action-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := remove(c.members[1], "rm-action-1")
	if err != nil || again.GetMessage() != first.GetMessage() {
		t.Fatalf("retry: %v %q, want the first answer %q", err, again.GetMessage(), first.GetMessage())
	}
	if _, err := remove(c.members[2], "rm-action-2"); grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("a new action on a removed license: %v, want NotFound", err)
	}
}
