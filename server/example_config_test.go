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
	if c.Notify == nil || c.Notify.SMTP == nil || len(c.Notify.Webhooks) != 1 {
		t.Fatalf("the example's notify object did not load: %+v", c.Notify)
	}
	// The secrets it names live on the member's host; here, in files of
	// the test.
	dir := t.TempDir()
	c.Notify.SMTP.PasswordFile, c.Notify.Webhooks[0].SecretFile = dir+"/smtp.password", dir+"/webhook.secret"
	os.WriteFile(c.Notify.SMTP.PasswordFile, []byte("mail-password\n"), 0o600)
	os.WriteFile(c.Notify.Webhooks[0].SecretFile, []byte("a-webhook-secret-of-32-bytes-abc\n"), 0o600)
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
	top := map[string]bool{}
	for _, k := range ConfigKeys() {
		top[k] = true
	}
	documented := map[string]bool{}
	depth := 0 // nesting of { and [ before this line; top-level keys are at 1
	for i, l := range lines {
		m := keyLine.FindStringSubmatch(l)
		d := depth
		if t := strings.TrimSpace(l); !isComment(l) {
			depth += strings.Count(t, "{") + strings.Count(t, "[") - strings.Count(t, "}") - strings.Count(t, "]")
		}
		if m == nil || d != 1 {
			continue
		}
		if !top[m[1]] {
			t.Errorf("%s sets %q, which is not a config key", path, m[1])
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
