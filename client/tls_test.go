package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/client/internal/fakeserver"
)

// The client verifies members' certificates: with the cluster CA it
// talks; with the system roots (which never signed a cluster CA) or in
// plaintext it gets nothing from a TLS member.
func TestClientVerifiesMemberCertificates(t *testing.T) {
	s, err := fakeserver.Start(1, fakeserver.Feature{Name: "cad", Version: 1, Seats: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	features := func(opts ...client.Option) error {
		c, err := client.New(s.Addrs(), append(opts, client.WithCallTimeout(2*time.Second))...)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = c.Features(ctx)
		return err
	}
	cfg, err := client.TLSConfig(s.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := features(client.WithTLS(cfg)); err != nil {
		t.Fatalf("with the cluster CA: %v", err)
	}
	if err := features(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("with the system roots: %v, want a certificate error", err)
	}
	if err := features(client.WithInsecure()); err == nil {
		t.Error("a plaintext client got an answer from a TLS member")
	}
	if _, err := client.TLSConfig("/nonexistent/ca.crt", "", ""); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := client.TLSConfig(s.CAFile(), "cert.pem", ""); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("certificate without key: %v", err)
	}
}
