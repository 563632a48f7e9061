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
	c := Config{Name: "m1", DataDir: t.TempDir()}
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
}

func TestConfigValidateKeepsGivenValues(t *testing.T) {
	c := Config{Name: "m1", DataDir: "/var/lib/triad", Listen: "127.0.0.1:7001", RaftListen: "127.0.0.1:7002",
		HTTPListen: "[::1]:7003", LeaseTTL: 5 * time.Second, IsolationMinutes: 7, IsolationAfter: 7 * time.Minute}
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
		c := Config{DataDir: t.TempDir()}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--name") {
			t.Fatalf("validate without name or hostname: %v, want an error naming --name", err)
		}
		return
	}
	c := Config{DataDir: t.TempDir()}
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
		"http_listen": "10.0.0.2:4080", "trust": ["a.pub", "b.pub"], "log_file": "/var/log/triad.log"}`
	if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	// Values already set and absent from the file are kept.
	c := Config{LeaseTTL: 7 * time.Second}
	if err := LoadConfigFile(path, &c); err != nil {
		t.Fatalf("LoadConfigFile: %v", err)
	}
	want := Config{Name: "m2", DataDir: "/srv/triad", Listen: "10.0.0.2:4085", RaftListen: "10.0.0.2:4086",
		HTTPListen: "10.0.0.2:4080", Trust: []string{"a.pub", "b.pub"}, LogFile: "/var/log/triad.log", LeaseTTL: 7 * time.Second}
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
			for _, w := range []string{path, "name, data_dir, listen, raft_listen, raft_advertise, http_listen, peer_source_ip, isolation_minutes, trust, log_file"} {
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
