package server

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestExampleConfigDocumentsEveryKey: deploy/triadd.example.conf loads,
// is a valid configuration, and sets every config-file key with a comment
// above it (or above the group of keys it belongs to): a key added to
// Config without documenting it there fails here.
func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	const path = "../deploy/triadd.example.conf"
	var c Config
	if err := LoadConfigFile(path, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the example configuration does not validate: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := regexp.MustCompile(`^\s*"([a-z_]+)"\s*:`)
	isComment := func(l string) bool {
		l = strings.TrimSpace(l)
		return strings.HasPrefix(l, "#") || strings.HasPrefix(l, "//")
	}
	lines := strings.Split(string(b), "\n")
	documented := map[string]bool{}
	for i, l := range lines {
		m := keyLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		j := i - 1
		for j >= 0 && keyLine.MatchString(lines[j]) {
			j--
		}
		documented[m[1]] = j >= 0 && isComment(lines[j])
	}
	for _, k := range ConfigKeys() {
		switch doc, set := documented[k]; {
		case !set:
			t.Errorf("%s does not set config key %q", path, k)
		case !doc:
			t.Errorf("%s: key %q has no comment above it", path, k)
		}
	}
	if len(documented) != len(ConfigKeys()) {
		t.Errorf("%s sets %d keys, Config has %d: %v", path, len(documented), len(ConfigKeys()), ConfigKeys())
	}
}

// A misspelt key is refused, naming every valid key.
func TestConfigFileUnknownKey(t *testing.T) {
	path := t.TempDir() + "/c.conf"
	os.WriteFile(path, []byte("# comment\n{\"nmae\": \"x\"}\n"), 0o600)
	err := LoadConfigFile(path, &Config{})
	if err == nil || !strings.Contains(err.Error(), `unknown field "nmae"`) || !strings.Contains(err.Error(), strings.Join(ConfigKeys(), ", ")) {
		t.Fatalf("LoadConfigFile with a misspelt key: %v", err)
	}
}
