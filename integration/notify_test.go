package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/notify"
	"github.com/triadlm/triad/notify/notifytest"
	"github.com/triadlm/triad/proto/triadv1"
)

const hookSecret = "integration-webhook-secret-0123456789"

// notifyConfig writes a config file holding only a "notify" object.
func notifyConfig(t *testing.T, notify map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"notify": notify})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "triadd.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mailsAbout(ms *notifytest.MailServer, subject string) int {
	n := 0
	for _, m := range ms.Mails() {
		if m.Subject == subject {
			n++
		}
	}
	return n
}

// TestNotifyMemberEvents: on real processes, with a real SMTP server and a
// webhook receiver that verifies the HMAC: each member mails its own start;
// SIGKILL of the leader → the new leader (and only it) reports it down by
// name; a clean stop is reported by the stopping member before it exits;
// the last member, without a leader, reports the quorum lost and, reaching
// neither peer, itself isolated.
func TestNotifyMemberEvents(t *testing.T) {
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{})
	hooks := notifytest.StartWebhookReceiver(t, hookSecret, 0)
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	os.WriteFile(secretFile, []byte(hookSecret+"\n"), 0o600)
	cfg := notifyConfig(t, map[string]any{
		"smtp":     map[string]any{"server": ms.Addr, "from": "triad@example.com", "to": []string{"ops@example.com"}, "timeout": "5s"},
		"webhooks": []any{map[string]any{"url": hooks.URL, "secret_file": secretFile}},
	})
	c := &cluster{t: t, dir: t.TempDir()}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, "", "--config", cfg, "--test-isolation-after", "3s"))
	}
	for _, m := range c.members {
		ms.WaitMail(t, 20*time.Second, "member_start of "+m.name, func(ml notifytest.Mail) bool {
			return ml.Subject == "[Triad] member "+m.name+" started" && strings.Contains(ml.Body, "member:  "+m.name+"\n")
		})
		h := hooks.WaitHook(t, 20*time.Second, "member_start of "+m.name, func(h notifytest.Hook) bool {
			return h.Event == "member_start" && h.Payload["member"] == m.name
		})
		if h.Payload["sender"] != m.name || h.SigErr != nil {
			t.Fatalf("member_start of %s: %+v", m.name, h.Payload)
		}
	}
	c.form()
	victim := c.leader(c.members[0])
	var survivors []*member
	for _, m := range c.members {
		if m != victim {
			survivors = append(survivors, m)
		}
	}
	victim.kill()
	downSubject := "[Triad] member " + victim.name + " is down"
	ms.WaitMail(t, 40*time.Second, "member_down of "+victim.name, func(ml notifytest.Mail) bool { return ml.Subject == downSubject })
	h := hooks.WaitHook(t, 40*time.Second, "member_down of "+victim.name, func(h notifytest.Hook) bool {
		return h.Event == "member_down" && h.Payload["member"] == victim.name
	})
	newLeader := c.leader(survivors[0])
	if h.Payload["sender"] != newLeader.name || h.Payload["leader"] != newLeader.name {
		t.Fatalf("member_down sent by %v, want the new leader %s: %v", h.Payload["sender"], newLeader.name, h.Payload)
	}
	if !strings.Contains(newLeader.log(), `"msg":"notification sent","member":"`+newLeader.name+`","event":"member_down","channel":"mail","target":"ops@example.com"`) {
		t.Fatalf("the sender did not log the notification:\n%s", newLeader.log())
	}

	// A clean stop: the member_stop mail is out before the process exits.
	stopping := survivors[0]
	if stopping == newLeader {
		stopping = survivors[1]
	}
	last := survivors[0]
	if last == stopping {
		last = survivors[1]
	}
	stopping.stop()
	if n := mailsAbout(ms, "[Triad] member "+stopping.name+" stopped"); n != 1 {
		t.Fatalf("%d member_stop mails from %s once it exited, want 1", n, stopping.name)
	}
	if hs := hooks.Hooks(); !containsHook(hs, "member_stop", stopping.name, stopping.name) {
		t.Fatalf("no verified member_stop webhook from %s", stopping.name)
	}

	// Alone, the last member has no leader: it reports the quorum lost.
	ms.WaitMail(t, 60*time.Second, "quorum_lost", func(ml notifytest.Mail) bool {
		return ml.Subject == "[Triad] quorum lost: no leader" && strings.Contains(ml.Body, "member "+last.name+" has known no leader") && strings.Contains(ml.Body, "it reaches no other member")
	})
	hooks.WaitHook(t, 20*time.Second, "quorum_lost", func(h notifytest.Hook) bool {
		return h.Event == "quorum_lost" && h.Payload["sender"] == last.name
	})
	// Reaching neither peer, it also reports itself isolated, once.
	isoSubject := "[Triad] member " + last.name + " is isolated"
	ms.WaitMail(t, 30*time.Second, "member_isolated", func(ml notifytest.Mail) bool { return ml.Subject == isoSubject })
	hooks.WaitHook(t, 20*time.Second, "member_isolated", func(h notifytest.Hook) bool {
		return h.Event == "member_isolated" && h.Payload["sender"] == last.name && h.Payload["member"] == last.name
	})
	// One message per event, not one per member (nor one per second).
	if n := mailsAbout(ms, isoSubject); n != 1 {
		t.Fatalf("%d member_isolated mails, want 1", n)
	}
	if n := mailsAbout(ms, "[Triad] quorum lost: no leader"); n != 1 {
		t.Fatalf("%d quorum_lost mails, want 1", n)
	}
	if n := mailsAbout(ms, downSubject); n != 1 {
		t.Fatalf("%d member_down mails about %s, want 1", n, victim.name)
	}
	for _, hk := range hooks.Hooks() {
		if hk.SigErr != nil || hk.Status != 200 {
			t.Fatalf("webhook %s refused: %d %v", hk.Event, hk.Status, hk.SigErr)
		}
	}
}

func containsHook(hs []notifytest.Hook, event, member, sender string) bool {
	for _, h := range hs {
		if h.Event == event && h.Status == 200 && h.Payload["member"] == member && h.Payload["sender"] == sender {
			return true
		}
	}
	return false
}

// TestNotifyTestCommands: `triadctl server test-mail` through STARTTLS
// and AUTH PLAIN to a real SMTP server, `server test-webhook` to a
// receiver that checks the HMAC; both report the exact error when the
// password or the secret is wrong; they need a full session; the
// password and secret are never shown back or logged.
func TestNotifyTestCommands(t *testing.T) {
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{TLS: notifytest.ServerTLS(t, testCA), User: "triad-mailer", Password: "mail-Pa55word"})
	hooks := notifytest.StartWebhookReceiver(t, hookSecret, 0)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	config := func(password, secret string) string {
		return notifyConfig(t, map[string]any{
			"smtp": map[string]any{"server": ms.Addr, "from": "triad@example.com", "to": []string{"ops@example.com"}, "starttls": true,
				"tls_ca": testCAFile, "username": "triad-mailer", "password_file": write("pw-"+password, password+"\n")},
			"webhooks": []any{map[string]any{"url": hooks.URL, "secret_file": write("secret-"+secret, secret)}},
			"events":   map[string]any{"member_start": map[string]any{"enabled": false}},
		})
	}
	good := newMember(t, "solo", "", "--config", config("mail-Pa55word", hookSecret))
	out, err := ctlOn(t, good.addr, "server", "test-mail")
	if err != nil || !strings.Contains(out, "ok: test mail sent by solo to ops@example.com") {
		t.Fatalf("test-mail: %q %v", out, err)
	}
	m := ms.WaitMail(t, 10*time.Second, "test mail", func(ml notifytest.Mail) bool { return ml.Subject == "[Triad] test notification from solo" })
	if !m.TLS || m.User != "triad-mailer" || m.Mech != "PLAIN" {
		t.Fatalf("the test mail did not come over STARTTLS with AUTH PLAIN: %+v", m)
	}
	out, err = ctlOn(t, good.addr, "server", "test-webhook")
	if err != nil || !strings.Contains(out, "ok: test webhook sent by solo to "+hooks.URL) {
		t.Fatalf("test-webhook: %q %v", out, err)
	}
	hooks.WaitHook(t, 10*time.Second, "test", func(h notifytest.Hook) bool { return h.Event == "test" && h.Payload["sender"] == "solo" })
	for _, ml := range ms.Mails() {
		if strings.Contains(ml.Subject, "started") {
			t.Fatal("member_start was switched off but sent")
		}
	}

	// Shown back without secrets.
	var show struct {
		Notifications struct {
			SmtpServer      string `json:"smtp_server"`
			SmtpStarttls    bool   `json:"smtp_starttls"`
			SmtpUsername    string `json:"smtp_username"`
			SmtpPasswordSet bool   `json:"smtp_password_set"`
			Webhooks        []struct {
				URL       string `json:"url"`
				SecretSet bool   `json:"secret_set"`
			} `json:"webhooks"`
			Events []struct {
				Event   string `json:"event"`
				Enabled bool   `json:"enabled"`
			} `json:"events"`
		} `json:"notifications"`
	}
	ctlJSON(t, good.addr, &show, "server", "show")
	n := show.Notifications
	if n.SmtpServer != ms.Addr || !n.SmtpStarttls || n.SmtpUsername != "triad-mailer" || !n.SmtpPasswordSet || len(n.Webhooks) != 1 || !n.Webhooks[0].SecretSet || len(n.Events) != len(notify.Kinds())-1 { // every kind but test
		t.Fatalf("server show notifications: %+v", n)
	}
	text, err := ctlOn(t, good.addr, "server", "show")
	if err != nil || !strings.Contains(text, "triad-mailer (password set)") || !regexp.MustCompile(`events off\s+member_start\n`).MatchString(text) {
		t.Fatalf("server show: %q %v", text, err)
	}
	jsonOut, _ := ctlOn(t, good.addr, "--output", "json", "server", "show")
	for _, where := range []string{text, jsonOut, good.log()} {
		if strings.Contains(where, "mail-Pa55word") || strings.Contains(where, hookSecret) {
			t.Fatalf("a secret was shown or logged:\n%s", where)
		}
	}
	if l := good.log(); !strings.Contains(l, `"msg":"notification sent","member":"solo","event":"test","channel":"mail","target":"ops@example.com"`) ||
		!strings.Contains(l, `"msg":"notification sent","member":"solo","event":"test","channel":"webhook","target":"`+hooks.URL+`"`) {
		t.Fatalf("the test notifications were not logged:\n%s", l)
	}

	// Counted in /metrics.
	body, err := scrape(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"mail", "webhook"} {
		if v, ok := metricValue(body, `triad_notifications_total{channel="`+ch+`",event="test",result="sent"}`); !ok || v != 1 {
			t.Fatalf("triad_notifications_total for the test %s: %v %v", ch, v, ok)
		}
	}

	// Wrong password and wrong secret: the exact errors, exit status 1.
	bad := newMember(t, "wrong", "", "--config", config("not-the-password", "not-the-webhook-secret-at-all"))
	out, err = ctlOn(t, bad.addr, "server", "test-mail")
	if err == nil || !strings.Contains(out, "FAILED: test mail from wrong to ops@example.com: authentication as triad-mailer: 535") || !strings.Contains(err.Error(), "535") {
		t.Fatalf("test-mail with a wrong password: %q %v", out, err)
	}
	out, err = ctlOn(t, bad.addr, "server", "test-webhook")
	if err == nil || !strings.Contains(out, "HTTP 401 Unauthorized: bad signature: HMAC mismatch") {
		t.Fatalf("test-webhook with a wrong secret: %q %v", out, err)
	}
	if ms.AuthFailures() == 0 {
		t.Fatal("the mail server saw no failed login")
	}

	// Full mode only.
	if _, err := ctlOn(t, good.addr, "cluster", "create", "--standalone"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlEnv(t, []string{"TRIAD_NEW_PASSWORD=Fu11-secret"}, "--server", good.addr, "password", "set", "full"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlEnv(t, []string{"TRIAD_PASSWORD=Fu11-secret", "TRIAD_NEW_PASSWORD=look-only"}, "--server", good.addr, "password", "set", "restricted"); err != nil {
		t.Fatal(err)
	}
	sent := len(ms.Mails())
	_, err = ctlEnv(t, []string{"TRIAD_PASSWORD=look-only"}, "--server", good.addr, "--mode", "restricted", "server", "test-mail")
	if err == nil || !strings.Contains(err.Error(), "server test-mail needs full mode") {
		t.Fatalf("test-mail in restricted mode: %v", err)
	}
	if len(ms.Mails()) != sent {
		t.Fatal("a restricted session sent mail")
	}
	if _, err := ctlEnv(t, []string{"TRIAD_PASSWORD=Fu11-secret"}, "--server", good.addr, "server", "test-mail"); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyLicenseAndDiskEvents: on a standalone member, a soft limit's
// overdraft is reported once as feature_over_capacity; when the member's
// clock passes 01:00 local, the licenses expiring within the warning
// window are listed in one message, and the held countdown seat has used
// up its pool (countdown_pool_low); the data disk is reported at the
// threshold and at each further percent.
func TestNotifyLicenseAndDiskEvents(t *testing.T) {
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{})
	hooks := notifytest.StartWebhookReceiver(t, hookSecret, 0)
	dir := t.TempDir()
	clockFile, diskFile, faultFile := filepath.Join(dir, "clock"), filepath.Join(dir, "disk"), filepath.Join(dir, "disk-fault")
	os.WriteFile(diskFile, []byte("79\n"), 0o644)
	cfg := notifyConfig(t, map[string]any{
		"smtp":                map[string]any{"server": ms.Addr, "from": "triad@example.com", "to": []string{"ops@example.com"}},
		"webhooks":            []any{map[string]any{"url": hooks.URL, "secret": hookSecret}},
		"disk_check_interval": "1s",
	})
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	solo := newMember(t, "solo", filepath.Join(c.dir, "vendor.pub"), "--config", cfg, "--test-clock-file", clockFile, "--test-disk-usage-file", diskFile,
		"--test-disk-fault-file", faultFile)
	c.members = []*member{solo}
	if _, err := ctlOn(t, solo.addr, "cluster", "create", "--standalone"); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(3 * 24 * time.Hour).UTC().Format(time.RFC3339)
	var info struct{ Serial string }
	ctlJSON(t, solo.addr, &info, "license", "enroll", c.issue("soon", "--valid-until", until, "--feature", "cad:1:1,overdraft=1", "--feature", "sim:1:1,hours=1"))

	// Over capacity: the overdraft seat.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := licensing(t, solo.addr)
	for i := 0; i < 2; i++ {
		if _, err := checkoutAs(ctx, t, lc, fmt.Sprintf("cad-%d", i), "cad", "u"); err != nil {
			t.Fatalf("cad seat %d: %v", i, err)
		}
	}
	// One countdown seat held: its single seat-hour runs out once the
	// clock steps forward below. Its TTL is the longest (1 h), so that it
	// is still held when the clock steps however slow the steps before
	// that run.
	if _, err := lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: "sim-0", Feature: "sim",
		Version: 1, User: "u", Host: "h-u", ClientId: rawClientID, TtlSeconds: 3600}); err != nil {
		t.Fatalf("sim seat: %v", err)
	}
	h := hooks.WaitHook(t, 20*time.Second, "feature_over_capacity", func(h notifytest.Hook) bool { return h.Event == "feature_over_capacity" })
	if h.Payload["feature"] != "cad" || !strings.Contains(fmt.Sprint(h.Payload["text"]), "feature cad is over capacity at version 1 and above: 2 seats in use, 1 licensed") {
		t.Fatalf("over capacity: %v", h.Payload)
	}
	ms.WaitMail(t, 10*time.Second, "over capacity", func(m notifytest.Mail) bool { return m.Subject == "[Triad] feature cad is over capacity" })

	// The disk: at 85 (threshold 80), again at 87, not at a repeated 87,
	// re-armed under 80, again at 81.
	var seen []string
	for _, pct := range []string{"85", "87", "87", "70", "81"} {
		os.WriteFile(diskFile, []byte(pct), 0o644)
		if pct == "87" && len(seen) == 2 || pct == "70" {
			time.Sleep(2500 * time.Millisecond) // let the 1 s check see a value that must send nothing
			continue
		}
		hooks.WaitHook(t, 15*time.Second, "disk_usage at "+pct, func(h notifytest.Hook) bool {
			return h.Event == "disk_usage" && fmt.Sprint(h.Payload["disk_percent"]) == pct
		})
		seen = append(seen, pct)
	}
	var disk []string
	for _, h := range hooks.Hooks() {
		if h.Event == "disk_usage" {
			disk = append(disk, fmt.Sprint(h.Payload["disk_percent"]))
		}
	}
	if strings.Join(disk, ",") != "85,87,81" {
		t.Fatalf("disk_usage sent at %v, want 85,87,81", disk)
	}
	ms.WaitMail(t, 10*time.Second, "disk at 87", func(m notifytest.Mail) bool { return m.Subject == "[Triad] data disk of solo is 87% full" })

	// 01:00 local on the member's clock: one message listing the license.
	// The step is at least 65 minutes, so that the held countdown seat uses
	// up its hour whatever the time of day (from 00:30, 01:00 is only half
	// an hour away: the step then goes on to 01:35, still past one 01:00).
	now := time.Now()
	step := max(notifyNext1AM(now).Sub(now)+5*time.Second, 65*time.Minute)
	os.WriteFile(clockFile, []byte(step.String()), 0o644)
	h = hooks.WaitHook(t, 30*time.Second, "licenses_expiring", func(h notifytest.Hook) bool { return h.Event == "licenses_expiring" })
	lics, _ := h.Payload["licenses"].([]any)
	if len(lics) != 1 || lics[0].(map[string]any)["serial"] != info.Serial || fmt.Sprint(h.Payload["warning_days"]) != "7" {
		t.Fatalf("licenses_expiring: %v", h.Payload)
	}
	m := ms.WaitMail(t, 10*time.Second, "expiring mail", func(m notifytest.Mail) bool { return m.Subject == "[Triad] 1 license(s) expire within 7 days" })
	if !strings.Contains(m.Body, "  "+info.Serial+"  ends ") {
		t.Fatalf("expiring mail body:\n%s", m.Body)
	}
	h = hooks.WaitHook(t, 30*time.Second, "countdown_pool_low", func(h notifytest.Hook) bool { return h.Event == "countdown_pool_low" })
	if h.Payload["feature"] != "sim" || !strings.Contains(fmt.Sprint(h.Payload["message"]), "the countdown pool of sim is") {
		t.Fatalf("pool low: %v", h.Payload)
	}
	count := map[string]int{}
	for _, h := range hooks.Hooks() {
		count[h.Event]++
	}
	if count["feature_over_capacity"] != 1 || count["licenses_expiring"] != 1 {
		t.Fatalf("repeated notifications: %v", count)
	}

	// A data disk fault: the fenced member says so itself, once.
	if err := os.WriteFile(faultFile, []byte("enospc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkoutAs(ctx, t, lc, "after-fault", "cad", "u"); err == nil {
		t.Fatal("a checkout on a member whose disk is full was granted")
	}
	h = hooks.WaitHook(t, 30*time.Second, "disk_fault", func(h notifytest.Hook) bool { return h.Event == "disk_fault" })
	if h.Payload["member"] != "solo" || !strings.Contains(fmt.Sprint(h.Payload["message"]), "data disk full") {
		t.Fatalf("disk_fault: %v", h.Payload)
	}
	ms.WaitMail(t, 10*time.Second, "disk fault mail", func(m notifytest.Mail) bool {
		return m.Subject == "[Triad] member solo stopped serving: data disk fault" && strings.Contains(m.Body, "free space")
	})
}

// notifyNext1AM is the next 01:00 in the local time zone (the member's too).
func notifyNext1AM(t time.Time) time.Time {
	y, m, d := t.Date()
	next := time.Date(y, m, d, 1, 0, 0, 0, time.Local)
	if !next.After(t) {
		next = time.Date(y, m, d+1, 1, 0, 0, 0, time.Local)
	}
	return next
}
