package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/server"
)

// healthcheckCommand probes the member's /readyz (or /healthz with
// --live) and exits 0 when it answers 200, 1 otherwise: a container
// HEALTHCHECK or a systemd/monitoring probe that needs no curl. With
// --config it reads the status address and TLS settings from the member's
// own config file.
func healthcheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "healthcheck",
		Usage: "probe a member's /readyz (exit 0 ready, 1 not) over HTTP or HTTPS; for container health checks",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "read http_listen, http_tls and tls_ca from this member config file"},
			&cli.StringFlag{Name: "http", Usage: "status address HOST:PORT (default: the config's http_listen, else " + server.DefaultHTTPListen + "; an empty host means 127.0.0.1)"},
			&cli.BoolFlag{Name: "tls", Usage: "use HTTPS (default: the config's http_tls)"},
			&cli.StringFlag{Name: "ca", Usage: "CA the member's certificate must chain to (default: the config's tls_ca)"},
			&cli.BoolFlag{Name: "live", Usage: "probe /healthz (process alive) instead of /readyz (formed, with a leader)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after this long", Value: 5 * time.Second},
		},
		Action: func(c *cli.Context) error {
			var cfg server.Config
			if p := c.String("config"); p != "" {
				if err := server.LoadConfigFile(p, &cfg); err != nil {
					return cli.Exit("triadd healthcheck: "+err.Error(), 2)
				}
			}
			addr, useTLS, ca := cfg.HTTPListen, cfg.HTTPTLS, cfg.TLSCA
			if c.IsSet("http") || addr == "" {
				addr = c.String("http")
			}
			if addr == "" {
				addr = server.DefaultHTTPListen
			}
			if c.IsSet("tls") {
				useTLS = c.Bool("tls")
			}
			if c.IsSet("ca") {
				ca = c.String("ca")
			}
			path := "/readyz"
			if c.Bool("live") {
				path = "/healthz"
			}
			body, err := probe(c.Context, addr, path, useTLS, ca, c.Duration("timeout"))
			if err != nil {
				return cli.Exit("triadd healthcheck: "+err.Error(), 1)
			}
			fmt.Fprintln(c.App.Writer, body)
			return nil
		},
	}
}

// probe GETs path on the status address and returns the body of a 200.
func probe(ctx context.Context, addr, path string, useTLS bool, caFile string, timeout time.Duration) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("status address %q is not HOST:PORT: %v", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	tr := &http.Transport{}
	if useTLS {
		scheme = "https"
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return "", fmt.Errorf("read CA: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return "", fmt.Errorf("CA file %s holds no PEM certificate", caFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := scheme + "://" + net.JoinHostPort(host, port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", url, resp.Status, text)
	}
	return text, nil
}
