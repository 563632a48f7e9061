package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/triadlm/triad/notify"
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

	// TLS (docs/security.md). TLSCA is the cluster CA bundle; TLSCert and
	// TLSKey are this member's certificate (made by `triadd tls issue
	// --member`), used with mutual TLS on the failover port and as the
	// licensing port's server certificate. TLSClientCA, when set, makes
	// the licensing port require client certificates signed by it.
	// HTTPTLS serves the status port over HTTPS with the same certificate.
	// Insecure runs everything in plaintext; it must be asked for.
	TLSCA       string `json:"tls_ca"`
	TLSCert     string `json:"tls_cert"`
	TLSKey      string `json:"tls_key"`
	TLSClientCA string `json:"tls_client_ca"`
	HTTPTLS     bool   `json:"http_tls"`
	Insecure    bool   `json:"insecure"`
	// AddrFile: once listening, the member writes the addresses it got
	// there (JSON: listen, raft, http), so ports can be 0 (chosen by the
	// system) and tooling still finds them.
	AddrFile string `json:"addr_file"`

	// RaftAdvertise is the Raft address other members dial, when it differs
	// from RaftListen (NAT, proxies).
	RaftAdvertise string `json:"raft_advertise"`
	// PeerSourceIP is the local IP that connections to other members leave
	// from, on machines with several addresses ("" = the system's choice).
	PeerSourceIP string `json:"peer_source_ip"`
	// IsolationMinutes: a member that reaches neither peer this long reports
	// itself isolated (1–60, default 5).
	IsolationMinutes int `json:"isolation_minutes"`
	// IsolationAfter overrides IsolationMinutes. Test-only (seconds-scale
	// isolation in integration tests).
	IsolationAfter time.Duration `json:"-"`

	// LeaseTTL is the default lease TTL (30 s).
	LeaseTTL time.Duration `json:"-"`
	// ClockOffset shifts this member's wall clock. Test-only: it exists so
	// integration tests can simulate clock skew; never set it in production.
	ClockOffset time.Duration `json:"-"`
	// ClockFile (test only) holds a duration the member adds to its wall
	// clock while running, re-read every 100 ms: a clock step on demand.
	ClockFile string `json:"-"`
	// ThrottleEvery (test only) replaces the administration password
	// throttle's refill interval (admin.DefaultThrottleEvery), so tests on a
	// loaded machine see the burst used up before a refill.
	ThrottleEvery time.Duration `json:"-"`
	// MachineID (test only) replaces the machine identity (/etc/machine-id)
	// in this member's machine proof, so tests can play several machines.
	MachineID string `json:"-"`
	// HoldReconcileFile (test only): while this file exists, the leader
	// does not make Raft's voters follow the cluster record, so a test can
	// leave a member replacement half done.
	HoldReconcileFile string `json:"-"`
	// LogFile is where the member's structured log goes ("" = stderr).
	LogFile string `json:"log_file"`
	// LogMaxMB: the log file is rotated before it would grow past this many
	// megabytes (1–10240, default 100). Used only with LogFile.
	LogMaxMB int `json:"log_max_mb"`
	// LogKeep is how many rotated log files are kept next to LogFile; older
	// ones are deleted (1–100, default 5). Used only with LogFile.
	LogKeep int `json:"log_keep"`

	// SnapshotThreshold and TrailingLogs override Raft's snapshot settings
	// (0 = the defaults, 16384 and 10240). Test-only: they let integration
	// tests cross the snapshot threshold with a few hundred entries, so that
	// restore from a snapshot on disk and InstallSnapshot catch-up run on
	// real processes.
	SnapshotThreshold uint64 `json:"-"`
	TrailingLogs      uint64 `json:"-"`

	// TestNoForwardStream makes the member answer Peer.ForwardStream with
	// UNIMPLEMENTED, as a triadd from before it does (in-process tests of
	// the followers' fallback to unary Forward calls).
	TestNoForwardStream bool `json:"-"`

	// HTTPAdvertise is the base URL (http[s]://HOST:PORT) at which browsers
	// reach this member's status port, when it differs from what the
	// member derives (the --http-listen host, else its licensing address's
	// host): the dashboards of the other members poll it, and it is an
	// allowed CORS origin of the others' status endpoints.
	HTTPAdvertise string `json:"http_advertise"`
	// Notify configures mail and webhook notifications
	// (docs/notifications.md); nil sends nothing.
	Notify *notify.Config `json:"notify,omitempty"`
	// DiskUsageFile (test only) holds the data disk's use in percent,
	// read instead of measuring the file system.
	DiskUsageFile string `json:"-"`
	// TestFormat makes the member apply and report only Raft command
	// formats up to this one, as the previous build would (0 = this
	// build's fsm.FormatVersion). Test-only: rolling-upgrade tests.
	TestFormat uint32 `json:"-"`
	// DiskFaultFile (test only): while this file exists, writes to the
	// Raft files fail, with ENOSPC if it says "enospc", else with EIO (an
	// fsync error): disk faults on demand (diskfault.go).
	DiskFaultFile string `json:"-"`
}

// Defaults from DESIGN §11.
const (
	DefaultListen     = ":4085"
	DefaultRaftListen = ":4086"
	DefaultHTTPListen = ":4080"
	DefaultLeaseTTL   = 30 * time.Second
	DefaultLogMaxMB   = 100
	DefaultLogKeep    = 5
)

// LoadConfigFile reads a JSON config file into c. Lines whose first
// non-blank characters are # or // are comments (deploy/triadd.example.conf
// documents every key that way).
func LoadConfigFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(stripComments(b)))
	dec.DisallowUnknownFields() // a misspelt key must not pass silently
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s is not valid JSON: %v (expected keys: %s)", path, err, strings.Join(ConfigKeys(), ", "))
	}
	return nil
}

// stripComments blanks comment lines, keeping line numbers.
func stripComments(b []byte) []byte {
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		t := bytes.TrimSpace(l)
		if bytes.HasPrefix(t, []byte("#")) || bytes.HasPrefix(t, []byte("//")) {
			lines[i] = nil
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

// ConfigKeys are the keys a config file may hold, in Config's order.
func ConfigKeys() []string {
	var keys []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// FlagSource is the command line as MergeFlags reads it; urfave/cli's
// *cli.Context implements it.
type FlagSource interface {
	IsSet(name string) bool
	String(name string) string
	Int(name string) int
	Uint64(name string) uint64
	StringSlice(name string) []string
	Duration(name string) time.Duration
	Bool(name string) bool
}

// MergeFlags lays the command line over a configuration read from a file:
// a flag given on the command line wins; a key the file leaves empty takes
// the flag's default. Settings without a config-file key (the lease TTL and
// the test-only ones) always come from the flags.
func MergeFlags(file Config, f FlagSource) Config {
	c := file
	for flag, dst := range map[string]*string{
		"name": &c.Name, "data-dir": &c.DataDir, "listen": &c.Listen, "raft-listen": &c.RaftListen,
		"http-listen": &c.HTTPListen, "raft-advertise": &c.RaftAdvertise, "peer-source-ip": &c.PeerSourceIP,
		"log-file": &c.LogFile, "tls-ca": &c.TLSCA, "tls-cert": &c.TLSCert, "tls-key": &c.TLSKey,
		"tls-client-ca": &c.TLSClientCA, "addr-file": &c.AddrFile, "http-advertise": &c.HTTPAdvertise,
	} {
		if f.IsSet(flag) || *dst == "" {
			*dst = f.String(flag)
		}
	}
	for flag, dst := range map[string]*int{
		"isolation-minutes": &c.IsolationMinutes, "log-max-mb": &c.LogMaxMB, "log-keep": &c.LogKeep,
	} {
		if f.IsSet(flag) || *dst == 0 {
			*dst = f.Int(flag)
		}
	}
	for flag, dst := range map[string]*bool{"insecure": &c.Insecure, "http-tls": &c.HTTPTLS} {
		if f.IsSet(flag) {
			*dst = f.Bool(flag)
		}
	}
	if f.IsSet("trust") || len(c.Trust) == 0 {
		c.Trust = f.StringSlice("trust")
	}
	c.LeaseTTL = f.Duration("lease-ttl")
	c.ClockOffset = f.Duration("test-clock-offset")
	c.ClockFile = f.String("test-clock-file")
	c.ThrottleEvery = f.Duration("test-throttle-every")
	c.IsolationAfter = f.Duration("test-isolation-after")
	c.SnapshotThreshold = f.Uint64("test-snapshot-threshold")
	c.TrailingLogs = f.Uint64("test-trailing-logs")
	mergeNotifyFlags(&c, f)
	c.TestFormat = uint32(f.Uint64("test-format-version"))
	c.MachineID = f.String("test-machine-id")
	c.HoldReconcileFile = f.String("test-hold-reconcile-file")
	c.DiskFaultFile = f.String("test-disk-fault-file")
	return c
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
	if c.IsolationMinutes == 0 {
		c.IsolationMinutes = 5
	}
	if c.IsolationMinutes < 1 || c.IsolationMinutes > 60 {
		return fmt.Errorf("--isolation-minutes %d is out of range: use 1 to 60", c.IsolationMinutes)
	}
	if c.IsolationAfter <= 0 {
		c.IsolationAfter = time.Duration(c.IsolationMinutes) * time.Minute
	}
	if c.LogMaxMB == 0 {
		c.LogMaxMB = DefaultLogMaxMB
	}
	if c.LogMaxMB < 1 || c.LogMaxMB > 10240 {
		return fmt.Errorf("--log-max-mb %d is out of range: use 1 to 10240 (megabytes per log file)", c.LogMaxMB)
	}
	if c.LogKeep == 0 {
		c.LogKeep = DefaultLogKeep
	}
	if c.LogKeep < 1 || c.LogKeep > 100 {
		return fmt.Errorf("--log-keep %d is out of range: use 1 to 100 (rotated log files kept)", c.LogKeep)
	}
	if c.PeerSourceIP != "" && net.ParseIP(c.PeerSourceIP) == nil {
		return fmt.Errorf("--peer-source-ip %q is not an IP address", c.PeerSourceIP)
	}
	if c.RaftAdvertise != "" {
		if _, _, err := net.SplitHostPort(c.RaftAdvertise); err != nil {
			return fmt.Errorf("--raft-advertise %q is not HOST:PORT: %v", c.RaftAdvertise, err)
		}
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.HTTPAdvertise != "" {
		if err := checkHTTPAdvertise(c.HTTPAdvertise, c.HTTPTLS); err != nil {
			return err
		}
	}
	for name, addr := range map[string]string{"--listen": c.Listen, "--raft-listen": c.RaftListen, "--http-listen": c.HTTPListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q is not HOST:PORT: %v", name, addr, err)
		}
	}
	if c.Notify != nil {
		if err := c.Notify.Validate(); err != nil {
			return err
		}
	}
	tlsFiles := c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSClientCA != ""
	switch {
	case c.Insecure && (tlsFiles || c.HTTPTLS):
		return fmt.Errorf("--insecure and TLS settings (--tls-ca, --tls-cert, --tls-key, --tls-client-ca, --http-tls) exclude each other: drop --insecure to use TLS")
	case !c.Insecure && (c.TLSCA == "" || c.TLSCert == "" || c.TLSKey == ""):
		return fmt.Errorf("TLS is not configured: give --tls-ca (cluster CA), --tls-cert and --tls-key (this member's certificate; make them with `triadd tls init-ca` and `triadd tls issue --member NAME`), or pass --insecure to run in plaintext on a network you trust")
	}
	return nil
}

// checkHTTPAdvertise checks an --http-advertise base URL: http or https
// (matching --http-tls), a host and a port, nothing else.
func checkHTTPAdvertise(raw string, httpTLS bool) error {
	u, err := url.Parse(raw)
	want := "http"
	if httpTLS {
		want = "https"
	}
	switch {
	case err != nil:
		return fmt.Errorf("--http-advertise %q is not a URL: %v", raw, err)
	case u.Scheme != want || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil:
		return fmt.Errorf("--http-advertise %q must be %s://HOST:PORT (the status port as browsers reach it; https with --http-tls)", raw, want)
	}
	return nil
}
