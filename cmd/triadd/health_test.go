package main

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/urfave/cli/v2"
)

// triadd healthcheck probes /readyz over HTTPS verified against the CA
// (from flags or from the member's config file), exits 0 with the body
// when ready and 1 with the member's reason when not; --live probes
// /healthz; a certificate of another CA is refused.
func TestHealthcheckCommand(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok\n"))
		case "/readyz":
			if !ready.Load() {
				http.Error(w, "not ready: no leader", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ready\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	addr := strings.TrimPrefix(srv.URL, "https://")
	conf := filepath.Join(dir, "triadd.conf")
	os.WriteFile(conf, []byte("# a member's config\n{\"http_listen\": \""+addr+"\", \"http_tls\": true, \"tls_ca\": \""+ca+"\"}\n"), 0o600)

	run := func(args ...string) (string, error) {
		app := newApp()
		var out bytes.Buffer
		app.Writer = &out
		app.ExitErrHandler = func(*cli.Context, error) {} // keep the test process alive
		err := app.Run(append([]string{"triadd", "healthcheck"}, args...))
		return out.String(), err
	}
	if _, err := run("--http", addr, "--tls", "--ca", ca); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("not ready: %v, want the 503 and its reason", err)
	}
	if out, err := run("--config", conf, "--live"); err != nil || out != "ok\n" {
		t.Fatalf("--live: %q %v", out, err)
	}
	ready.Store(true)
	if out, err := run("--config", conf); err != nil || out != "ready\n" {
		t.Fatalf("ready, from the config file: %q %v", out, err)
	}
	if out, err := run("--http", addr, "--tls", "--ca", ca); err != nil || out != "ready\n" {
		t.Fatalf("ready, from flags: %q %v", out, err)
	}
	if _, err := run("--http", addr, "--tls"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate not signed by a trusted CA: %v, want a certificate error", err)
	}
	if _, err := run("--http", addr); err == nil {
		t.Fatal("plain HTTP to an HTTPS port succeeded")
	}
	if code := exitCode(t, run, "--http", "127.0.0.1:1"); code != 1 {
		t.Fatalf("exit code for an unreachable member: %d, want 1", code)
	}
}

func exitCode(t *testing.T, run func(...string) (string, error), args ...string) int {
	_, err := run(args...)
	if c, ok := err.(cli.ExitCoder); ok {
		return c.ExitCode()
	}
	t.Fatalf("error %v is not an exit code", err)
	return 0
}
