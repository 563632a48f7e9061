package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"
)

// Config is a member's configuration. The same keys are accepted as
// command-line flags and in a JSON config file (flags win).
type Config struct {
	Name       string   `json:"name"`
	DataDir    string   `json:"data_dir"`
	Listen     string   `json:"listen"`      // licensing + admin + peer gRPC
	RaftListen string   `json:"raft_listen"` // Raft transport (failover port)
	HTTPListen string   `json:"http_listen"` // status, metrics, dashboard
	Trust      []string `json:"trust"`       // vendor public key files

	// LeaseTTL is the default lease TTL (30 s).
	LeaseTTL time.Duration `json:"-"`
	// ClockOffset shifts this member's wall clock. Test-only: it exists so
	// integration tests can simulate clock skew; never set it in production.
	ClockOffset time.Duration `json:"-"`
	// LogFile is where the member's structured log goes ("" = stderr).
	LogFile string `json:"log_file"`
}

// Defaults from DESIGN §11.
const (
	DefaultListen     = ":4085"
	DefaultRaftListen = ":4086"
	DefaultHTTPListen = ":4080"
	DefaultLeaseTTL   = 30 * time.Second
)

// LoadConfigFile reads a JSON config file into c.
func LoadConfigFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt key must not pass silently
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s is not valid JSON: %v (expected keys: name, data_dir, listen, raft_listen, http_listen, trust, log_file)", path, err)
	}
	return nil
}

// validate fills defaults and checks the configuration.
func (c *Config) validate() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("member name is empty and the hostname is unknown: set --name")
		}
		c.Name = h
	}
	if c.DataDir == "" {
		return fmt.Errorf("data directory is not set: pass --data-dir DIR")
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.RaftListen == "" {
		c.RaftListen = DefaultRaftListen
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	for name, addr := range map[string]string{"--listen": c.Listen, "--raft-listen": c.RaftListen, "--http-listen": c.HTTPListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q is not HOST:PORT: %v", name, addr, err)
		}
	}
	return nil
}
