package admin

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triadlm/triad/server/pki"
)

// The in-process admin servers of these tests serve TLS with a member
// certificate of a test CA, and runApp gives triadctl that CA (--ca), as an
// administrator does.
var (
	testTLSOnce sync.Once
	testCAFile  string
	testServer  *tls.Config
	testTLSErr  error
)

func testTLS(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	testTLSOnce.Do(func() {
		ca, err := pki.NewCA("admin test CA", time.Hour)
		if err != nil {
			testTLSErr = err
			return
		}
		dir, err := os.MkdirTemp("", "triad-admin-tls-")
		if err != nil {
			testTLSErr = err
			return
		}
		testCAFile = filepath.Join(dir, "ca.crt")
		if testTLSErr = os.WriteFile(testCAFile, ca.CertPEM(), 0o644); testTLSErr != nil {
			return
		}
		is, err := ca.Issue(pki.Member, "m1", []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			testTLSErr = err
			return
		}
		kp, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
		if err != nil {
			testTLSErr = err
			return
		}
		testServer = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	})
	if testTLSErr != nil {
		t.Fatal(testTLSErr)
	}
	return testCAFile, testServer
}

// triadctl refuses a member whose certificate its --ca did not sign, and a
// plaintext --insecure tool gets nothing from a TLS member.
func TestCLIVerifiesServerCertificate(t *testing.T) {
	addr := startAdminServer(t, &fakeBackend{})
	_, _, err := runApp(t, App(), "--server", addr, "--ca", "", "--timeout", "3s", "server", "show")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server show with the system roots: %v, want a certificate error", err)
	}
	_, _, err = runApp(t, App(), "--server", addr, "--insecure", "--timeout", "3s", "server", "show")
	if err == nil {
		t.Error("a plaintext triadctl got an answer from a TLS member")
	}
	_, _, err = runApp(t, App(), "--server", addr, "--insecure", "--ca", "x.crt", "server", "show")
	wantErr(t, err, "--insecure", "exclude each other")
	if _, _, err := runCLI(t, "--server", addr, "--timeout", "3s", "server", "show"); err != nil {
		t.Errorf("server show with the test CA: %v", err)
	}
}
