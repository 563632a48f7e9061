package server

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigValidateDefaults(t *testing.T) {
	c := Config{Name: "m1", DataDir: t.TempDir(), Insecure: true}
	if err := c.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if c.Listen != ":4085" || c.RaftListen != ":4086" || c.HTTPListen != ":4080" {
		t.Errorf("listen defaults = %q %q %q, want :4085 :4086 :4080", c.Listen, c.RaftListen, c.HTTPListen)
	}
	if c.LeaseTTL != 30*time.Second {
		t.Errorf("LeaseTTL default = %s, want 30s", c.LeaseTTL)
	}
	if c.Name != "m1" {
		t.Errorf("Name changed to %q", c.Name)
	}
	if c.LogMaxMB != 100 || c.LogKeep != 5 {
		t.Errorf("log rotation defaults = %d MB, %d kept; want 100 MB, 5 kept", c.LogMaxMB, c.LogKeep)
	}
}

func TestConfigValidateKeepsGivenValues(t *testing.T) {
	c := Config{Name: "m1", DataDir: "/var/lib/triad", Listen: "127.0.0.1:7001", RaftListen: "127.0.0.1:7002",
		HTTPListen: "[::1]:7003", LeaseTTL: 5 * time.Second, IsolationMinutes: 7, IsolationAfter: 7 * time.Minute,
		LogMaxMB: 10240, LogKeep: 1, Insecure: true}
	want := c
	if err := c.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("validate changed given values: got %+v, want %+v", c, want)
	}
}

func TestConfigValidateNameFromHostname(t *testing.T) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		// validate must then refuse and say to set --name.
		c := Config{DataDir: t.TempDir(), Insecure: true}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--name") {
			t.Fatalf("validate without name or hostname: %v, want an error naming --name", err)
		}
		return
	}
	c := Config{DataDir: t.TempDir(), Insecure: true}
	if err := c.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if c.Name != h {
		t.Errorf("Name = %q, want the hostname %q", c.Name, h)
	}
}

func TestConfigValidateRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no data dir", Config{Name: "m1"}, []string{"--data-dir"}},
		{"listen without port", Config{Name: "m1", DataDir: "/d", Listen: "127.0.0.1"}, []string{"--listen", `"127.0.0.1"`, "HOST:PORT"}},
		{"raft listen garbage", Config{Name: "m1", DataDir: "/d", RaftListen: "a:b:c"}, []string{"--raft-listen", `"a:b:c"`}},
		{"http listen without port", Config{Name: "m1", DataDir: "/d", HTTPListen: "localhost"}, []string{"--http-listen", `"localhost"`}},
		{"log max negative", Config{Name: "m1", DataDir: "/d", LogMaxMB: -1}, []string{"--log-max-mb -1", "1 to 10240"}},
		{"log max too big", Config{Name: "m1", DataDir: "/d", LogMaxMB: 10241}, []string{"--log-max-mb 10241", "1 to 10240"}},
		{"log keep negative", Config{Name: "m1", DataDir: "/d", LogKeep: -1}, []string{"--log-keep -1", "1 to 100"}},
		{"log keep too many", Config{Name: "m1", DataDir: "/d", LogKeep: 101}, []string{"--log-keep 101", "1 to 100"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			err := c.validate()
			if err == nil {
				t.Fatalf("validate(%+v) = nil, want an error", tc.cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "triad.json")
	js := `{"name": "m2", "data_dir": "/srv/triad", "listen": "10.0.0.2:4085", "raft_listen": "10.0.0.2:4086",
		"http_listen": "10.0.0.2:4080", "trust": ["a.pub", "b.pub"], "log_file": "/var/log/triad.log",
		"log_max_mb": 20, "log_keep": 3}`
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	// Values already set and absent from the file are kept.
	c := Config{LeaseTTL: 7 * time.Second}
	if err := LoadConfigFile(path, &c); err != nil {
		t.Fatalf("LoadConfigFile: %v", err)
	}
	want := Config{Name: "m2", DataDir: "/srv/triad", Listen: "10.0.0.2:4085", RaftListen: "10.0.0.2:4086",
		HTTPListen: "10.0.0.2:4080", Trust: []string{"a.pub", "b.pub"}, LogFile: "/var/log/triad.log", LogMaxMB: 20, LogKeep: 3,
		LeaseTTL: 7 * time.Second}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("LoadConfigFile = %+v, want %+v", c, want)
	}
}

func TestLoadConfigFileBadJSON(t *testing.T) {
	for name, content := range map[string]string{
		"syntax":     `{"name": "m1",`,
		"wrong type": `{"trust": "a.pub"}`,
		"not object": `["m1"]`,
		"misspelt":   `{"datadir": "/var/lib/triad"}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "triad.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var c Config
			err := LoadConfigFile(path, &c)
			if err == nil {
				t.Fatalf("LoadConfigFile(%s) = nil, want an error", content)
			}
			for _, w := range []string{path, "name, data_dir, listen, raft_listen, http_listen, trust, tls_ca, tls_cert, tls_key, tls_client_ca, http_tls, insecure, addr_file, raft_advertise, peer_source_ip, isolation_minutes, log_file, log_max_mb, log_keep"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigFileMissing(t *testing.T) {
	var c Config
	err := LoadConfigFile(filepath.Join(t.TempDir(), "nope.json"), &c)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadConfigFile of a missing file = %v, want a not-exist error", err)
	}
}

// fakeFlags is a command line for MergeFlags: set holds the flags given,
// defaults the values of flags not given.
type fakeFlags struct {
	set, defaults map[string]any
}

func (f fakeFlags) value(name string) any {
	if v, ok := f.set[name]; ok {
		return v
	}
	return f.defaults[name]
}

func (f fakeFlags) IsSet(name string) bool { _, ok := f.set[name]; return ok }
func (f fakeFlags) String(name string) string {
	s, _ := f.value(name).(string)
	return s
}
func (f fakeFlags) Int(name string) int {
	n, _ := f.value(name).(int)
	return n
}
func (f fakeFlags) Uint64(name string) uint64 {
	n, _ := f.value(name).(uint64)
	return n
}
func (f fakeFlags) StringSlice(name string) []string {
	s, _ := f.value(name).([]string)
	return s
}
func (f fakeFlags) Bool(name string) bool {
	b, _ := f.value(name).(bool)
	return b
}
func (f fakeFlags) Duration(name string) time.Duration {
	d, _ := f.value(name).(time.Duration)
	return d
}

var flagDefaults = map[string]any{"listen": DefaultListen, "raft-listen": DefaultRaftListen, "http-listen": DefaultHTTPListen,
	"isolation-minutes": 5, "lease-ttl": DefaultLeaseTTL, "log-max-mb": DefaultLogMaxMB, "log-keep": DefaultLogKeep}

func TestMergeFlagsGivenFlagsWin(t *testing.T) {
	file := Config{Name: "file", DataDir: "/file", Listen: "10.0.0.1:1", RaftListen: "10.0.0.1:2", HTTPListen: "10.0.0.1:3",
		RaftAdvertise: "nat:2", PeerSourceIP: "10.0.0.1", IsolationMinutes: 9, Trust: []string{"file.pub"}, LogFile: "/file.log",
		LogMaxMB: 50, LogKeep: 9}
	flags := fakeFlags{defaults: flagDefaults, set: map[string]any{
		"name": "flag", "data-dir": "/flag", "listen": "127.0.0.1:1", "raft-listen": "127.0.0.1:2", "http-listen": "127.0.0.1:3",
		"raft-advertise": "flag:2", "peer-source-ip": "127.0.0.1", "isolation-minutes": 3, "trust": []string{"a.pub", "b.pub"},
		"log-file": "/flag.log", "log-max-mb": 7, "log-keep": 2, "lease-ttl": 7 * time.Second, "test-clock-offset": time.Hour, "test-isolation-after": 3 * time.Second,
		"test-snapshot-threshold": uint64(64), "test-trailing-logs": uint64(16),
	}}
	got := MergeFlags(file, flags)
	want := Config{Name: "flag", DataDir: "/flag", Listen: "127.0.0.1:1", RaftListen: "127.0.0.1:2", HTTPListen: "127.0.0.1:3",
		RaftAdvertise: "flag:2", PeerSourceIP: "127.0.0.1", IsolationMinutes: 3, Trust: []string{"a.pub", "b.pub"}, LogFile: "/flag.log",
		LogMaxMB: 7, LogKeep: 2, LeaseTTL: 7 * time.Second, ClockOffset: time.Hour, IsolationAfter: 3 * time.Second, SnapshotThreshold: 64, TrailingLogs: 16}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MergeFlags = %+v, want %+v", got, want)
	}
}

func TestMergeFlagsFileWinsOverDefaults(t *testing.T) {
	file := Config{Name: "file", DataDir: "/file", Listen: "10.0.0.1:1", RaftListen: "10.0.0.1:2", HTTPListen: "10.0.0.1:3",
		RaftAdvertise: "nat:2", PeerSourceIP: "10.0.0.1", IsolationMinutes: 9, Trust: []string{"file.pub"}, LogFile: "/file.log",
		LogMaxMB: 50, LogKeep: 9}
	got := MergeFlags(file, fakeFlags{defaults: flagDefaults})
	want := file
	want.LeaseTTL = DefaultLeaseTTL // no config-file key: always the flag's
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MergeFlags = %+v, want %+v", got, want)
	}
}

func TestMergeFlagsDefaultsFillWhatFileLeavesEmpty(t *testing.T) {
	file := Config{Name: "file", Trust: []string{"file.pub"}}
	got := MergeFlags(file, fakeFlags{defaults: flagDefaults, set: map[string]any{"data-dir": "/flag", "insecure": true}})
	want := Config{Name: "file", DataDir: "/flag", Listen: DefaultListen, RaftListen: DefaultRaftListen, HTTPListen: DefaultHTTPListen,
		IsolationMinutes: 5, Trust: []string{"file.pub"}, LeaseTTL: DefaultLeaseTTL, LogMaxMB: DefaultLogMaxMB, LogKeep: DefaultLogKeep, Insecure: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MergeFlags = %+v, want %+v", got, want)
	}
	if err := got.validate(); err != nil {
		t.Errorf("merged config does not validate: %v", err)
	}
	if got.IsolationAfter != 5*time.Minute {
		t.Errorf("isolation delay by default = %s, want 5m (DESIGN §11)", got.IsolationAfter)
	}
}

// A member never starts in plaintext by accident: without TLS files it
// refuses unless --insecure is given, and --insecure with TLS files is a
// contradiction it names.
func TestConfigValidateTLSOrInsecure(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want []string
	}{
		{"nothing", Config{}, []string{"TLS is not configured", "--tls-ca", "--tls-cert", "--tls-key", "--insecure", "triadd tls init-ca"}},
		{"ca only", Config{TLSCA: "ca.crt"}, []string{"TLS is not configured", "--tls-cert"}},
		{"cert without key", Config{TLSCA: "ca.crt", TLSCert: "m.crt"}, []string{"--tls-key"}},
		{"insecure with files", Config{Insecure: true, TLSCert: "m.crt"}, []string{"--insecure", "exclude each other"}},
		{"insecure with https", Config{Insecure: true, HTTPTLS: true}, []string{"--insecure", "--http-tls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.Name, c.DataDir = "m1", "/d"
			err := c.validate()
			if err == nil {
				t.Fatalf("validate accepted %+v", tc.c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	ok := Config{Name: "m1", DataDir: "/d", TLSCA: "ca.crt", TLSCert: "m.crt", TLSKey: "m.key"}
	if err := ok.validate(); err != nil {
		t.Errorf("validate with TLS files: %v", err)
	}
}
