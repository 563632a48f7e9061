package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

func validCheckoutRequest() *triadv1.CheckoutRequest {
	return &triadv1.CheckoutRequest{ProtocolVersion: LicensingProtocolVersion, RequestId: "req-1", Feature: "cad", ClientId: "client-1"}
}

func TestValidateCheckoutAccepts(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*triadv1.CheckoutRequest)
	}{
		{"minimal", func(*triadv1.CheckoutRequest) {}},
		{"longest ids and names", func(r *triadv1.CheckoutRequest) {
			r.RequestId = strings.Repeat("r", maxIDLen)
			r.Feature = strings.Repeat("f", maxNameLen)
			r.User = strings.Repeat("u", maxNameLen)
			r.Host = strings.Repeat("h", maxNameLen)
			r.ClientId = strings.Repeat("c", maxIDLen)
		}},
		{"largest count", func(r *triadv1.CheckoutRequest) { r.Count = maxCount }},
		{"shortest ttl", func(r *triadv1.CheckoutRequest) { r.TtlSeconds = minTTLSeconds }},
		{"longest ttl", func(r *triadv1.CheckoutRequest) { r.TtlSeconds = maxTTLSeconds }},
		{"default ttl and count", func(r *triadv1.CheckoutRequest) { r.TtlSeconds, r.Count = 0, 0 }},
		{"queued, default wait", func(r *triadv1.CheckoutRequest) { r.Queue = true }},
		{"queued, longest wait", func(r *triadv1.CheckoutRequest) { r.Queue, r.QueueWaitSeconds = true, maxQueueWaitSeconds }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validCheckoutRequest()
			tc.mod(r)
			if err := validateCheckout(r); err != nil {
				t.Fatalf("validateCheckout = %v, want nil", err)
			}
		})
	}
}

func TestValidateCheckoutRefuses(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*triadv1.CheckoutRequest)
		field string
	}{
		{"empty request id", func(r *triadv1.CheckoutRequest) { r.RequestId = "" }, "request_id"},
		{"long request id", func(r *triadv1.CheckoutRequest) { r.RequestId = strings.Repeat("r", maxIDLen+1) }, "request_id"},
		{"empty feature", func(r *triadv1.CheckoutRequest) { r.Feature = "" }, "feature"},
		{"long feature", func(r *triadv1.CheckoutRequest) { r.Feature = strings.Repeat("f", maxNameLen+1) }, "feature"},
		{"count too large", func(r *triadv1.CheckoutRequest) { r.Count = maxCount + 1 }, "count"},
		{"ttl too long", func(r *triadv1.CheckoutRequest) { r.TtlSeconds = maxTTLSeconds + 1 }, "ttl_seconds"},
		{"ttl huge", func(r *triadv1.CheckoutRequest) { r.TtlSeconds = 1 << 31 }, "ttl_seconds"},
		{"long user", func(r *triadv1.CheckoutRequest) { r.User = strings.Repeat("u", maxNameLen+1) }, "user"},
		{"long host", func(r *triadv1.CheckoutRequest) { r.Host = strings.Repeat("h", maxNameLen+1) }, "host"},
		{"empty client id", func(r *triadv1.CheckoutRequest) { r.ClientId = "" }, "client_id"},
		{"long client id", func(r *triadv1.CheckoutRequest) { r.ClientId = strings.Repeat("c", maxIDLen+1) }, "client_id"},
		{"wait too long", func(r *triadv1.CheckoutRequest) { r.Queue, r.QueueWaitSeconds = true, maxQueueWaitSeconds+1 }, "queue_wait_seconds"},
		{"wait without queue", func(r *triadv1.CheckoutRequest) { r.QueueWaitSeconds = 60 }, "queue_wait_seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validCheckoutRequest()
			tc.mod(r)
			err := validateCheckout(r)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("validateCheckout = %v, want InvalidArgument", err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.field) {
				t.Errorf("message %q does not name %s", msg, tc.field)
			}
		})
	}
}

func TestCheckProtocol(t *testing.T) {
	if err := checkProtocol(LicensingProtocolVersion); err != nil {
		t.Fatalf("checkProtocol(%d) = %v, want nil", LicensingProtocolVersion, err)
	}
	for v, want := range map[uint32]string{
		0: "license protocol version is invalid: client 0, server 2",
		3: "license protocol version is invalid: client 3, server 2",
		1: "license protocol version is invalid: client 1, server 2",
	} {
		err := checkProtocol(v)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("checkProtocol(%d) = %v, want FailedPrecondition", v, err)
			continue
		}
		if got := status.Convert(err).Message(); got != want {
			t.Errorf("checkProtocol(%d) message = %q, want %q", v, got, want)
		}
	}
}

// The handlers refuse a wrong protocol version or malformed input before
// touching the server, so they work on a service with no server at all.
func TestLicensingHandlersRefuseEarly(t *testing.T) {
	l := &licensingService{}
	ctx := context.Background()
	const wantVersion = "license protocol version is invalid: client 3, server 2"
	check := func(name string, err error, code codes.Code, msg string) {
		t.Helper()
		if status.Code(err) != code {
			t.Errorf("%s: err = %v, want %s", name, err, code)
			return
		}
		if got := status.Convert(err).Message(); !strings.Contains(got, msg) {
			t.Errorf("%s: message %q does not contain %q", name, got, msg)
		}
	}

	req := validCheckoutRequest()
	req.ProtocolVersion = 3
	_, err := l.Checkout(ctx, req)
	check("Checkout v2", err, codes.FailedPrecondition, wantVersion)
	_, err = l.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: 3, LeaseIds: []uint64{1}})
	check("Renew v2", err, codes.FailedPrecondition, wantVersion)
	_, err = l.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: 3, LeaseIds: []uint64{1}})
	check("Release v2", err, codes.FailedPrecondition, wantVersion)
	_, err = l.Features(ctx, &triadv1.FeaturesRequest{ProtocolVersion: 3})
	check("Features v2", err, codes.FailedPrecondition, wantVersion)

	req = validCheckoutRequest()
	req.Feature = ""
	_, err = l.Checkout(ctx, req)
	check("Checkout without feature", err, codes.InvalidArgument, "feature")
	_, err = l.Renew(ctx, &triadv1.RenewRequest{ProtocolVersion: LicensingProtocolVersion})
	check("Renew without ids", err, codes.InvalidArgument, "no lease ids")
	_, err = l.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: LicensingProtocolVersion, LeaseIds: make([]uint64, maxLeaseIDs+1)})
	check("Release with too many ids", err, codes.InvalidArgument, "at most")
}
