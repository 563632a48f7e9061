package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// WithTLS sets the TLS configuration the client verifies members with
// (default: TLS verified against the system's root CAs). Use TLSConfig to
// build one from a cluster CA file and an optional client certificate.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls, c.insecure = cfg, false }
}

// WithInsecure talks to members in plaintext: only for members started
// with --insecure, on a network you trust.
func WithInsecure() Option {
	return func(c *config) { c.tls, c.insecure = nil, true }
}

// TLSConfig builds the TLS configuration for members whose certificates
// chain to the CA certificates in caFile ("" = the system's roots). With
// certFile and keyFile, the client presents that certificate (members
// started with --tls-client-ca require one).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("triad: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("triad: CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("triad: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	case certFile != "" || keyFile != "":
		return nil, errors.New("triad: a client certificate needs both the certificate and its key")
	}
	return cfg, nil
}

// transportCredentials is what New dials members with.
func (c *config) transportCredentials() credentials.TransportCredentials {
	if c.insecure {
		return insecure.NewCredentials()
	}
	cfg := c.tls
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return credentials.NewTLS(cfg)
}
