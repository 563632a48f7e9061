package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triadlm/triad/notify"
)

// The notification flags lay over the config file's "notify" object: a
// flag given wins, the file's other keys (events, webhooks) stay.
func TestMergeNotifyFlags(t *testing.T) {
	off := false
	file := Config{Notify: &notify.Config{
		SMTP:     &notify.SMTPConfig{Server: "file-mail:25", From: "file@example.com", To: []string{"a@example.com"}},
		Webhooks: []*notify.WebhookConfig{{URL: "https://hooks.example.com/x", SecretFile: "/etc/triad/hook"}},
		Events:   map[string]*notify.EventConfig{notify.MemberStart: {Enabled: &off}},
	}}
	got := MergeFlags(file, fakeFlags{defaults: flagDefaults, set: map[string]any{
		"smtp-server": "flag-mail:587", "smtp-to": []string{"b@example.com,c@example.com", "d@example.com"}, "smtp-starttls": true,
		"smtp-username": "u", "smtp-password-file": "/pw", "notify-disk-percent": 90,
	}})
	n := got.Notify
	if n.SMTP.Server != "flag-mail:587" || n.SMTP.From != "file@example.com" || strings.Join(n.SMTP.To, " ") != "b@example.com c@example.com d@example.com" ||
		!n.SMTP.StartTLS || n.SMTP.Username != "u" || n.SMTP.PasswordFile != "/pw" || n.DiskPercent != 90 {
		t.Fatalf("merged smtp %+v, disk %d", n.SMTP, n.DiskPercent)
	}
	if len(n.Webhooks) != 1 || n.Webhooks[0].URL != "https://hooks.example.com/x" || n.Events[notify.MemberStart] == nil {
		t.Fatalf("the file's webhooks and events were lost: %+v", n)
	}
	if file.Notify.SMTP.Server != "file-mail:25" || file.Notify.DiskPercent != 0 {
		t.Fatal("merging changed the file's configuration")
	}
	// Webhook flags replace the file's webhooks; no flag keeps the file as is.
	got = MergeFlags(file, fakeFlags{defaults: flagDefaults, set: map[string]any{"webhook-url": []string{"http://127.0.0.1:9/h"}, "webhook-secret-file": "/s"}})
	if w := got.Notify.Webhooks; len(w) != 1 || w[0].URL != "http://127.0.0.1:9/h" || w[0].SecretFile != "/s" {
		t.Fatalf("webhooks %+v", w)
	}
	if got = MergeFlags(Config{}, fakeFlags{defaults: flagDefaults}); got.Notify != nil {
		t.Fatalf("no notification configured, got %+v", got.Notify)
	}
}

// A notification mistake stops the member at start with the key named; a
// misspelt key in the file is refused.
func TestConfigNotifyErrors(t *testing.T) {
	dir := t.TempDir()
	c := Config{Name: "m", DataDir: dir, Insecure: true, Notify: &notify.Config{
		SMTP: &notify.SMTPConfig{Server: "mail", From: "a@example.com", To: []string{"b@example.com"}, Username: "u", Password: "p"}}}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "notify.smtp: authentication needs starttls or tls") {
		t.Fatalf("auth in clear: %v", err)
	}
	path := filepath.Join(dir, "c.json")
	os.WriteFile(path, []byte(`{"notify": {"smtp": {"sever": "mail"}}}`), 0o600)
	var fc Config
	if err := LoadConfigFile(path, &fc); err == nil || !strings.Contains(err.Error(), `unknown field "sever"`) {
		t.Fatalf("misspelt key: %v", err)
	}
	os.WriteFile(path, []byte(`{"name": "m", "data_dir": "`+dir+`", "insecure": true, "notify": {"webhooks": [{"url": "http://127.0.0.1:9/h", "secret": "0123456789abcdef"}], "disk_check_interval": "2s", "events": {"disk_usage": {"enabled": false}}}}`), 0o600)
	fc = Config{}
	if err := LoadConfigFile(path, &fc); err != nil {
		t.Fatal(err)
	}
	if err := fc.validate(); err != nil {
		t.Fatal(err)
	}
	if fc.Notify.EventEnabled(notify.DiskUsageEvent) || !fc.Notify.EventEnabled(notify.MemberDown) || fc.Notify.DiskCheckInterval != notify.Duration(2e9) {
		t.Fatalf("loaded %+v", fc.Notify)
	}
	os.WriteFile(path, []byte(`{"notify": {"disk_check_interval": "often"}}`), 0o600)
	if err := LoadConfigFile(path, &fc); err == nil || !strings.Contains(err.Error(), `"often" is not a duration`) {
		t.Fatalf("bad duration: %v", err)
	}
}
