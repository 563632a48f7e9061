package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names the TLS material of one side of a member: the CA bundle that
// peers' certificates must chain to, and this member's certificate and key.
type Files struct {
	CA, Cert, Key string
}

// Creds holds TLS material loaded from Files and reloads it when a file
// changes on disk, so certificates are rotated by replacing the files,
// without a restart (checked at most once per reloadEvery, at handshakes).
type Creds struct {
	files Files

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cert    *tls.Certificate
	pool    *x509.CertPool
}

const reloadEvery = 5 * time.Second

// LoadCreds loads f; any of the files missing or invalid is an error that
// names it. f.CA may be empty when no peer certificate is verified
// (a licensing port that asks no client certificate).
func LoadCreds(f Files) (*Creds, error) {
	c := &Creds{files: f}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Creds) stampNow() string {
	s := ""
	for _, p := range []string{c.files.CA, c.files.Cert, c.files.Key} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

func (c *Creds) load() error {
	stamp := c.stampNow()
	var cert *tls.Certificate
	if c.files.Cert != "" || c.files.Key != "" {
		if c.files.Cert == "" || c.files.Key == "" {
			return errors.New("TLS needs both a certificate and its key: give --tls-cert and --tls-key")
		}
		kp, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
		if err != nil {
			return fmt.Errorf("load TLS certificate %s and key %s: %w", c.files.Cert, c.files.Key, err)
		}
		if kp.Leaf == nil && len(kp.Certificate) > 0 {
			kp.Leaf, _ = x509.ParseCertificate(kp.Certificate[0])
		}
		cert = &kp
	}
	var pool *x509.CertPool
	if c.files.CA != "" {
		p, err := LoadPool(c.files.CA)
		if err != nil {
			return err
		}
		pool = p
	}
	c.mu.Lock()
	c.cert, c.pool, c.stamp, c.checked = cert, pool, stamp, time.Now()
	c.mu.Unlock()
	return nil
}

// current returns the material, reloading it if the files changed. A
// reload that fails keeps the previous material (a half-copied file must
// not take the member off the network).
func (c *Creds) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	due := time.Since(c.checked) > reloadEvery
	if due {
		c.checked = time.Now()
	}
	cert, pool, stamp := c.cert, c.pool, c.stamp
	c.mu.Unlock()
	if due && c.stampNow() != stamp {
		if err := c.load(); err == nil {
			c.mu.Lock()
			cert, pool = c.cert, c.pool
			c.mu.Unlock()
		}
	}
	return cert, pool
}

// Leaf is this side's own certificate.
func (c *Creds) Leaf() *x509.Certificate {
	cert, _ := c.current()
	if cert == nil {
		return nil
	}
	return cert.Leaf
}

// Verify checks that chain[0] chains to the CA bundle for usage.
func (c *Creds) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	_, pool := c.current()
	if pool == nil {
		return errors.New("no CA configured to verify the peer's certificate")
	}
	if len(chain) == 0 {
		return errors.New("the peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("certificate of %q is not signed by this cluster's CA: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// MemberCheck decides whether a verified member certificate's name may
// connect (nil: any member certificate).
type MemberCheck func(name string) error

// MutualServer is the failover side's server config: a member certificate
// signed by the cluster CA is required of every peer.
func (c *Creds) MutualServer(check MemberCheck) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyMember(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, check)
		},
	}
}

// MutualClient is the failover side's client config: the member dialled
// must present a member certificate of the cluster CA. Host names are not
// checked (members are named by certificate, and Raft addresses may be
// advertised through NAT); the member name is, through check.
func (c *Creds) MutualClient(check MemberCheck) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified in VerifyConnection against the cluster CA
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			if cert == nil {
				return &tls.Certificate{}, nil // none: the member will refuse us
			}
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return c.verifyMember(cs.PeerCertificates, x509.ExtKeyUsageServerAuth, check)
		},
	}
}

func (c *Creds) verifyMember(chain []*x509.Certificate, usage x509.ExtKeyUsage, check MemberCheck) error {
	if err := c.Verify(chain, usage); err != nil {
		return err
	}
	if !IsMember(chain[0]) {
		return fmt.Errorf("certificate %q is not a member certificate (organizational unit %s): only the cluster's members may connect to the failover port", chain[0].Subject.CommonName, MemberOU)
	}
	if check != nil {
		return check(chain[0].Subject.CommonName)
	}
	return nil
}

// PublicServer is the licensing port's server config. With clientCA set,
// clients must present a certificate signed by it (or a member certificate
// of the cluster CA: members discover each other through this port).
func (c *Creds) PublicServer(clientCA *Creds) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
	}
	if clientCA != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := clientCA.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err != nil && c.verifyMember(cs.PeerCertificates, x509.ExtKeyUsageClientAuth, nil) == nil {
				return nil
			}
			return err
		}
	}
	return cfg
}
