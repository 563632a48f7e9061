package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeCA(t *testing.T, dir string) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return ca
}

func issueTo(t *testing.T, ca *CA, kind Kind, name, dir string) (string, string) {
	t.Helper()
	is, err := ca.Issue(kind, name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := WriteIssued(dir, name, is)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// Certificates verify against their own CA only, member certificates are
// told from client certificates, and a saved CA loads back and is never
// overwritten.
func TestIssueAndVerify(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, filepath.Join(dir, "ca"))
	if err := ca.Save(filepath.Join(dir, "ca")); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("saving over an existing CA: %v", err)
	}
	loaded, err := LoadCA(filepath.Join(dir, "ca"))
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
	other := writeCA(t, filepath.Join(dir, "other"))
	mc, mk := issueTo(t, loaded, Member, "alpha", dir)
	cc, ck := issueTo(t, ca, Client, "ops", dir)
	xc, xk := issueTo(t, other, Member, "alpha-forged", dir)
	creds, err := LoadCreds(Files{CA: filepath.Join(dir, "ca", CACertFile), Cert: mc, Key: mk})
	if err != nil {
		t.Fatal(err)
	}
	load := func(c, k string) *x509.Certificate {
		cr, err := LoadCreds(Files{Cert: c, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		return cr.Leaf()
	}
	member, client, forged := load(mc, mk), load(cc, ck), load(xc, xk)
	if !IsMember(member) || IsMember(client) {
		t.Errorf("IsMember: member %v, client %v", IsMember(member), IsMember(client))
	}
	if err := creds.verifyMember([]*x509.Certificate{member}, x509.ExtKeyUsageClientAuth, nil); err != nil {
		t.Errorf("member certificate refused: %v", err)
	}
	if err := creds.verifyMember([]*x509.Certificate{client}, x509.ExtKeyUsageClientAuth, nil); err == nil || !strings.Contains(err.Error(), "not a member certificate") {
		t.Errorf("client certificate as a member: %v", err)
	}
	if err := creds.verifyMember([]*x509.Certificate{forged}, x509.ExtKeyUsageClientAuth, nil); err == nil || !strings.Contains(err.Error(), "not signed by this cluster's CA") {
		t.Errorf("another CA's member certificate: %v", err)
	}
	if err := creds.verifyMember(nil, x509.ExtKeyUsageClientAuth, nil); err == nil {
		t.Error("no certificate accepted")
	}
	if err := creds.Verify([]*x509.Certificate{client}, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client certificate passes as a server certificate")
	}
	if _, err := ca.Issue(Member, "beta", nil, time.Hour); err == nil {
		t.Error("a member certificate without hosts was issued")
	}
	if _, err := LoadCreds(Files{CA: filepath.Join(dir, "nope.crt"), Cert: mc, Key: mk}); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := LoadCreds(Files{CA: filepath.Join(dir, "ca", CACertFile), Cert: mc}); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("certificate without key: %v", err)
	}
	if _, err := LoadCreds(Files{Cert: mc, Key: ck}); err == nil {
		t.Error("a certificate with another certificate's key was loaded")
	}
}

// Rotation: replacing the certificate files is picked up at the next
// check, without a restart; a broken replacement keeps the old material.
func TestCredsReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, filepath.Join(dir, "ca"))
	mc, mk := issueTo(t, ca, Member, "alpha", dir)
	creds, err := LoadCreds(Files{CA: filepath.Join(dir, "ca", CACertFile), Cert: mc, Key: mk})
	if err != nil {
		t.Fatal(err)
	}
	first := creds.Leaf()
	issueTo(t, ca, Member, "alpha", dir) // new key pair, same paths
	expire := func() {
		creds.mu.Lock()
		creds.checked = time.Time{}
		creds.mu.Unlock()
	}
	expire()
	second := creds.Leaf()
	if second.Equal(first) {
		t.Fatal("the replaced certificate was not picked up")
	}
	if err := os.WriteFile(mc, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	expire()
	if !creds.Leaf().Equal(second) {
		t.Error("a broken replacement displaced the working certificate")
	}
}
