package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Paris for the DST case

	"github.com/triadlm/triad/notify"
	"github.com/triadlm/triad/notify/notifytest"
	"github.com/triadlm/triad/server/pki"
)

const secret = "0123456789abcdef-secret"

// syncBuf is a log sink safe for the notifier's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newNotifier(t *testing.T, cfg *notify.Config) (*notify.Notifier, *syncBuf) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	n := notify.New(cfg, "alpha", slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	n.SetRetryBase(time.Millisecond)
	n.Start()
	t.Cleanup(n.Close)
	return n, &logs
}

func TestRenderDefaultTemplates(t *testing.T) {
	cfg := &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: "http://127.0.0.1:1/x", Secret: secret}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	cases := map[string]struct {
		e             notify.Event
		subject, body string
	}{
		notify.MemberStart: {notify.Event{Kind: notify.MemberStart, Sender: "alpha", Member: "alpha", Time: at}, "[Triad] member alpha started", "Member alpha started."},
		notify.MemberDown: {notify.Event{Kind: notify.MemberDown, Sender: "alpha", Member: "bravo", Time: at, Since: at.Add(-5 * time.Second), Message: "Member bravo is down.", Leader: "alpha"},
			"[Triad] member bravo is down", "Down since: 2026-03-04 05:06:02 UTC"},
		notify.DiskUsageEvent: {notify.Event{Kind: notify.DiskUsageEvent, Sender: "alpha", Member: "alpha", Time: at, DiskPercent: 83, DiskThreshold: 80, DataDir: "/data"},
			"[Triad] data disk of alpha is 83% full", "holding /data on member alpha is 83% full (notification threshold 80%)"},
		notify.LicensesExpiring: {notify.Event{Kind: notify.LicensesExpiring, Sender: "alpha", Time: at, WarningDays: 7, Licenses: []notify.License{
			{Serial: "L-1", ValidUntil: at.Add(49 * time.Hour), DaysLeft: 2}, {Serial: "L-2", ValidUntil: at.Add(100 * time.Hour), DaysLeft: 4}}},
			"[Triad] 2 license(s) expire within 7 days", "  L-1  ends 2026-03-06 06:06 UTC (2 days left)\n  L-2  ends 2026-03-08 09:06 UTC (4 days left)"},
	}
	for kind, c := range cases {
		subject, body, err := cfg.Render(c.e)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if subject != c.subject || !strings.Contains(body, c.body) || !strings.Contains(body, "member:  alpha\ntime:    2026-03-04 05:06:07 UTC") {
			t.Errorf("%s: subject %q body %q; want subject %q and body containing %q", kind, subject, body, c.subject, c.body)
		}
	}
	// Every kind renders with its defaults.
	for _, k := range notify.Kinds() {
		if s, b, err := cfg.Render(notify.Event{Kind: k, Sender: "alpha", Member: "bravo", Time: at}); err != nil || s == "" || b == "" {
			t.Errorf("%s: %q %q %v", k, s, b, err)
		}
	}
}

func TestCustomTemplates(t *testing.T) {
	off := false
	cfg := &notify.Config{
		Webhooks: []*notify.WebhookConfig{{URL: "http://127.0.0.1:1/x", Secret: secret}},
		Events: map[string]*notify.EventConfig{
			notify.MemberStop:       {Subject: "down: {{.Member}}\r\nBcc: evil@example.com", Body: "{{.Member}} stopped at {{.Time.Format \"15:04\"}}"},
			notify.MemberStart:      {Enabled: &off},
			notify.LicensesExpiring: {Body: "first: {{(index .Licenses 0).Serial}}"},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, b, err := cfg.Render(notify.Event{Kind: notify.MemberStop, Member: "bravo", Time: time.Date(2026, 1, 1, 13, 14, 0, 0, time.UTC)})
	// The subject is one header line: a template cannot inject headers.
	if err != nil || s != "down: bravo Bcc: evil@example.com" || b != "bravo stopped at 13:14" {
		t.Fatalf("got %q %q %v", s, b, err)
	}
	if cfg.EventEnabled(notify.MemberStart) || !cfg.EventEnabled(notify.MemberStop) || !cfg.EventEnabled(notify.DiskUsageEvent) {
		t.Fatal("per-event switches not honoured")
	}
	// A template that fails at run time (no license) falls back to the
	// default and says so.
	_, b, err = cfg.Render(notify.Event{Kind: notify.LicensesExpiring, WarningDays: 7})
	if err == nil || !strings.Contains(err.Error(), "the default was used") || !strings.Contains(b, "Licenses expiring within 7 days") {
		t.Fatalf("fallback: %q %v", b, err)
	}
	// Templates are checked when the configuration is loaded.
	for tmpl, want := range map[string]string{
		"{{.Nope}}":   "notify.events.member_down.body: ",
		"{{.Member":   "notify.events.member_down.body: ",
		"{{.Licenses": "unclosed action",
	} {
		bad := &notify.Config{SMTP: nil, Webhooks: cfg.Webhooks, Events: map[string]*notify.EventConfig{notify.MemberDown: {Body: tmpl}}}
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("template %q: %v, want %q", tmpl, err, want)
		}
	}
	bad := &notify.Config{Webhooks: cfg.Webhooks, Events: map[string]*notify.EventConfig{"member_gone": {}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `unknown event "member_gone"`) {
		t.Fatalf("unknown event: %v", err)
	}
}

func TestSignatureFormatAndVerify(t *testing.T) {
	body := []byte(`{"event":"test"}`)
	at := time.Unix(1700000000, 0)
	// Computed independently: python3 hmac.new(secret, b"1700000000." + body, sha256).
	want := "t=1700000000,v1=9d322d56c41ad01d7726861c1bb7152729dcc4ff91426870e74a73ddb0a1a61e"
	if got := notify.Sign([]byte(secret), at, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if err := notify.Verify([]byte(secret), want, body, at.Add(time.Minute), notify.DefaultTolerance); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
		want           string
	}{
		"altered body": {secret, want, []byte(`{"event":"tesT"}`), at, "does not match"},
		"wrong secret": {"another-secret-0123", want, body, at, "does not match"},
		"replayed":     {secret, want, body, at.Add(6 * time.Minute), "away from now"},
		"future":       {secret, want, body, at.Add(-6 * time.Minute), "away from now"},
		"no v1":        {secret, "t=1700000000", body, at, "lacks"},
		"garbage":      {secret, "sha256=abc", body, at, "lacks"},
	} {
		if err := notify.Verify([]byte(c.secret), c.header, c.body, c.now, notify.DefaultTolerance); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, notify.Backoff(n, time.Second, 30*time.Second, 1))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("backoff %v, want %v s", got, want)
		}
	}
	if d := notify.Backoff(3, time.Second, 30*time.Second, 1.2); d != 4800*time.Millisecond {
		t.Fatalf("jitter 1.2 on 4s = %s", d)
	}
	if d := notify.Backoff(1000, time.Second, 30*time.Second, 1); d != 30*time.Second {
		t.Fatalf("large n: %s", d)
	}
}

func TestDiskThresholds(t *testing.T) {
	d := notify.DiskWatch{Threshold: 80}
	readings := []int{50, 79, 80, 80, 81, 81, 83, 82, 82, 79, 60, 80, 99}
	var sent []int
	for _, r := range readings {
		if d.Observe(r) {
			sent = append(sent, r)
		}
	}
	// At the threshold, at each further percent up or down while above,
	// and again after dropping under it.
	want := []int{80, 81, 83, 82, 80, 99}
	if len(sent) != len(want) {
		t.Fatalf("sent at %v, want %v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("sent at %v, want %v", sent, want)
		}
	}
	pct, err := notify.DiskUsage(t.TempDir())
	if err != nil || pct < 0 || pct > 100 {
		t.Fatalf("DiskUsage = %d, %v", pct, err)
	}
}

func TestDailyAtOneLocal(t *testing.T) {
	loc := time.FixedZone("UTC+9", 9*3600)
	at := func(d, h, m int) time.Time { return time.Date(2026, 5, d, h, m, 0, 0, loc) }
	sched := notify.Daily{Hour: 1}
	var fired []time.Time
	// Polls every 10 minutes for three days, starting at 00:05 on the 1st.
	for now := at(1, 0, 5); now.Before(at(4, 0, 0)); now = now.Add(10 * time.Minute) {
		if sched.Due(now) {
			fired = append(fired, now)
		}
	}
	want := []time.Time{at(1, 1, 5), at(2, 1, 5), at(3, 1, 5)}
	if len(fired) != len(want) {
		t.Fatalf("fired at %v, want %v", fired, want)
	}
	for i := range want {
		if !fired[i].Equal(want[i]) {
			t.Fatalf("fired at %v, want %v", fired, want)
		}
	}
	// Started after 01:00: the first message is the next day's.
	late := notify.Daily{Hour: 1}
	if late.Due(at(1, 1, 30)) || late.Due(at(1, 23, 59)) || !late.Due(at(2, 1, 0)) {
		t.Fatal("a member started at 01:30 must wait for the next 01:00")
	}
	// A clock that jumps three days forward fires once.
	jump := notify.Daily{Hour: 1}
	jump.Due(at(1, 0, 0))
	if !jump.Due(at(4, 12, 0)) || jump.Due(at(4, 12, 1)) || !jump.Next().Equal(at(5, 1, 0)) {
		t.Fatalf("after a jump: next %v", jump.Next())
	}
	// Local time, across a DST change: 01:00 Paris is 00:00 UTC in winter,
	// 23:00 UTC the day before in summer.
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	n1 := notify.NextDaily(time.Date(2026, 3, 28, 12, 0, 0, 0, paris), 1)
	n2 := notify.NextDaily(n1, 1)
	if n1.UTC() != time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC) || n2.UTC() != time.Date(2026, 3, 29, 23, 0, 0, 0, time.UTC) {
		t.Fatalf("Paris DST: %v, %v", n1.UTC(), n2.UTC())
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret-pass\n"), 0o600)
	hook := []*notify.WebhookConfig{{URL: "http://127.0.0.1:1/x", Secret: secret}}
	for name, c := range map[string]struct {
		cfg  notify.Config
		want string
	}{
		"auth in clear":  {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail:25", From: "a@b.c", To: []string{"x@y.z"}, Username: "u", PasswordFile: pw}}, "authentication needs starttls or tls"},
		"no recipients":  {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail", From: "a@b.c"}}, "notify.smtp.to is empty"},
		"bad recipient":  {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail", From: "a@b.c", To: []string{"x@y.z>\r\nRCPT"}}}, "is not a mail address"},
		"both tls modes": {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail", From: "a@b.c", To: []string{"x@y.z"}, StartTLS: true, TLS: true}}, "exclude each other"},
		"bad auth mech":  {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail", From: "a@b.c", To: []string{"x@y.z"}, StartTLS: true, Username: "u", Password: "p", Auth: "cram-md5"}}, "use plain or login"},
		"missing pwfile": {notify.Config{SMTP: &notify.SMTPConfig{Server: "mail", From: "a@b.c", To: []string{"x@y.z"}, StartTLS: true, Username: "u", PasswordFile: filepath.Join(dir, "nope")}}, "notify.smtp.password_file"},
		"no secret":      {notify.Config{Webhooks: []*notify.WebhookConfig{{URL: "https://h.example/x"}}}, "notify.webhooks[0]: the signing secret is missing"},
		"ftp url":        {notify.Config{Webhooks: []*notify.WebhookConfig{{URL: "ftp://h/x", Secret: secret}}}, "is not an http(s) URL"},
		"disk percent":   {notify.Config{Webhooks: hook, DiskPercent: 100}, "notify.disk_percent 100 is out of range"},
		"attempts":       {notify.Config{Webhooks: []*notify.WebhookConfig{{URL: "http://h/x", Secret: secret, Attempts: 11}}}, "attempts 11 is out of range"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	ok := notify.Config{SMTP: &notify.SMTPConfig{Server: "mail.example.com", From: "a@b.c", To: []string{"x@y.z"}, StartTLS: true, Username: "u", PasswordFile: pw},
		Webhooks: []*notify.WebhookConfig{{URL: "https://user:pw@h.example/x?token=abc", Secret: secret}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.SMTP.Server != "mail.example.com:25" || ok.DiskPercent != 80 || *ok.ExpiryHour != 1 {
		t.Fatalf("defaults: %+v", ok)
	}
	// The summary shown to administrators holds no secret.
	b, _ := json.Marshal(ok.Summary())
	for _, s := range []string{"s3cret-pass", secret, "user:pw", "token=abc"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("summary shows %q: %s", s, b)
		}
	}
	if sum := ok.Summary(); !sum.PasswordSet || !sum.Webhooks[0].SecretSet || sum.Webhooks[0].URL != "https://h.example/x?..." {
		t.Fatalf("summary %+v", sum)
	}
}

func TestWebhookRetriesWithBackoff(t *testing.T) {
	recv := notifytest.StartWebhookReceiver(t, secret, 2) // two 503s, then 200
	n, logs := newNotifier(t, &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: recv.URL, Secret: secret, Attempts: 3}}})
	n.Send(notify.Event{Kind: notify.MemberDown, Member: "bravo", Message: "bravo is down"})
	h := recv.WaitHook(t, 10*time.Second, "member_down", func(h notifytest.Hook) bool { return h.Event == notify.MemberDown })
	if h.Payload["member"] != "bravo" || h.Payload["sender"] != "alpha" || h.Payload["subject"] != "[Triad] member bravo is down" || h.Payload["delivery"] == "" {
		t.Fatalf("payload %v", h.Payload)
	}
	if hooks := recv.Hooks(); len(hooks) != 3 || hooks[0].Delivery != hooks[2].Delivery {
		t.Fatalf("want 3 POSTs of one delivery, got %d: %+v", len(hooks), hooks)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.Flush(ctx)
	if l := logs.String(); strings.Count(l, "retrying") != 2 || !strings.Contains(l, `"msg":"notification sent","event":"member_down","channel":"webhook","target":"`+recv.URL+`"`) || !strings.Contains(l, `"attempts":3`) {
		t.Fatalf("log:\n%s", l)
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("the secret was logged")
	}
}

func TestWebhookGivesUpAfterAttempts(t *testing.T) {
	recv := notifytest.StartWebhookReceiver(t, secret, 1000)
	n, logs := newNotifier(t, &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: recv.URL, Secret: secret, Attempts: 4}}})
	n.Send(notify.Event{Kind: notify.QuorumLost, Message: "no leader"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Flush(ctx)
	if got := len(recv.Hooks()); got != 4 {
		t.Fatalf("%d POSTs, want exactly 4 attempts", got)
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"notification failed","event":"quorum_lost","channel":"webhook"`) || !strings.Contains(l, "HTTP 503") {
		t.Fatalf("log:\n%s", l)
	}
	// A 4xx (here: wrong secret → 401) is not retried.
	bad := notifytest.StartWebhookReceiver(t, "the-receivers-other-secret", 0)
	n2, _ := newNotifier(t, &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: bad.URL, Secret: secret, Attempts: 5}}})
	n2.Send(notify.Event{Kind: notify.QuorumLost})
	n2.Flush(ctx)
	if hs := bad.Hooks(); len(hs) != 1 || hs[0].Status != 401 || hs[0].SigErr == nil {
		t.Fatalf("401 retried or accepted: %+v", hs)
	}
}

func TestMailPlain(t *testing.T) {
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{})
	n, logs := newNotifier(t, &notify.Config{SMTP: &notify.SMTPConfig{Server: ms.Addr, From: "triad@example.com", To: []string{"ops@example.com", "oncall@example.com"}}})
	n.Send(notify.Event{Kind: notify.MemberStart, Member: "alpha", Message: "Member alpha started."})
	m := ms.WaitMail(t, 10*time.Second, "member_start", func(m notifytest.Mail) bool { return true })
	if m.Subject != "[Triad] member alpha started" || m.From != "triad@example.com" || len(m.To) != 2 || !strings.HasPrefix(m.Body, "Member alpha started.\n") || m.TLS || m.User != "" {
		t.Fatalf("mail %+v", m)
	}
	if m.Header.Get("Auto-Submitted") != "auto-generated" || m.Header.Get("Message-ID") == "" {
		t.Fatalf("headers %v", m.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.Flush(ctx)
	if !strings.Contains(logs.String(), `"event":"member_start","channel":"mail","target":"ops@example.com,oncall@example.com"`) {
		t.Fatalf("log:\n%s", logs)
	}
	// Events switched off are not sent; disabled kinds cost nothing.
	off := false
	n2, _ := newNotifier(t, &notify.Config{SMTP: &notify.SMTPConfig{Server: ms.Addr, From: "triad@example.com", To: []string{"ops@example.com"}},
		Events: map[string]*notify.EventConfig{notify.MemberStop: {Enabled: &off}}})
	n2.Send(notify.Event{Kind: notify.MemberStop, Member: "alpha"})
	n2.Send(notify.Event{Kind: notify.DiskUsageEvent, Member: "alpha", DiskPercent: 91, DiskThreshold: 80})
	ms.WaitMail(t, 10*time.Second, "disk_usage", func(m notifytest.Mail) bool { return strings.Contains(m.Subject, "91% full") })
	n2.Flush(ctx)
	for _, m := range ms.Mails() {
		if strings.Contains(m.Subject, "stopped") {
			t.Fatal("a disabled event was sent")
		}
	}
}

func TestMailStartTLSAuth(t *testing.T) {
	ca, err := pki.NewCA("mail test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{TLS: notifytest.ServerTLS(t, ca), User: "triad", Password: "right-password"})
	mk := func(auth, pass string, starttls bool, ca string) *notify.Config {
		return &notify.Config{SMTP: &notify.SMTPConfig{Server: ms.Addr, From: "triad@example.com", To: []string{"ops@example.com"},
			StartTLS: starttls, TLSCA: ca, Username: "triad", Password: pass, Auth: auth, Attempts: 1}}
	}
	for _, mech := range []string{"plain", "login"} {
		n, logs := newNotifier(t, mk(mech, "right-password", true, caFile))
		res, err := n.Test(context.Background(), notify.ChannelMail)
		if err != nil || len(res) != 1 || res[0].Err != nil {
			t.Fatalf("%s: %v %+v", mech, err, res)
		}
		m := ms.WaitMail(t, 5*time.Second, "test via "+mech, func(m notifytest.Mail) bool { return strings.EqualFold(m.Mech, mech) })
		if !m.TLS || m.User != "triad" || m.Subject != "[Triad] test notification from alpha" {
			t.Fatalf("%s: %+v", mech, m)
		}
		if strings.Contains(logs.String(), "right-password") {
			t.Fatal("password logged")
		}
	}
	// Exact errors: a wrong password, an unknown CA, no STARTTLS offered.
	n, _ := newNotifier(t, mk("plain", "wrong-password", true, caFile))
	res, _ := n.Test(context.Background(), notify.ChannelMail)
	if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "authentication as triad: 535") {
		t.Fatalf("wrong password: %+v", res)
	}
	n, _ = newNotifier(t, mk("plain", "right-password", true, ""))
	if res, _ = n.Test(context.Background(), notify.ChannelMail); res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "STARTTLS: tls: failed to verify certificate") {
		t.Fatalf("unknown CA: %+v", res[0].Err)
	}
	plain := notifytest.StartMailServer(t, notifytest.MailOptions{})
	cfg := mk("plain", "p", true, caFile)
	cfg.SMTP.Server = plain.Addr
	n, _ = newNotifier(t, cfg)
	if res, _ = n.Test(context.Background(), notify.ChannelMail); res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "does not offer STARTTLS") {
		t.Fatalf("no STARTTLS: %+v", res[0].Err)
	}
	// Unreachable server: the connect error, within the timeout.
	cfg = mk("plain", "p", true, caFile)
	cfg.SMTP.Server, cfg.SMTP.Timeout = "127.0.0.1:1", notify.Duration(2*time.Second)
	n, _ = newNotifier(t, cfg)
	if res, _ = n.Test(context.Background(), notify.ChannelMail); res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "connect to 127.0.0.1:1") {
		t.Fatalf("unreachable: %+v", res[0].Err)
	}
	if _, err := n.Test(context.Background(), notify.ChannelWebhook); err == nil || !strings.Contains(err.Error(), "webhook on member alpha is not configured") {
		t.Fatalf("no webhook: %v", err)
	}
}

func TestMailImplicitTLS(t *testing.T) {
	ca, err := pki.NewCA("mail test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o644)
	ms := notifytest.StartMailServer(t, notifytest.MailOptions{TLS: notifytest.ServerTLS(t, ca), Implicit: true, User: "u", Password: "pw-465"})
	n, _ := newNotifier(t, &notify.Config{SMTP: &notify.SMTPConfig{Server: ms.Addr, From: "a@example.com", To: []string{"b@example.com"}, TLS: true, TLSCA: caFile, Username: "u", Password: "pw-465"}})
	if res, err := n.Test(context.Background(), notify.ChannelMail); err != nil || res[0].Err != nil {
		t.Fatalf("%v %+v", err, res)
	}
	if m := ms.WaitMail(t, 5*time.Second, "over SMTPS", func(notifytest.Mail) bool { return true }); !m.TLS || m.User != "u" {
		t.Fatalf("%+v", m)
	}
}

// Test reaches every target of the channel, once, and reports each.
func TestTestReportsEveryTarget(t *testing.T) {
	good := notifytest.StartWebhookReceiver(t, secret, 0)
	down := notifytest.StartWebhookReceiver(t, secret, 5) // 503 to the first 5 POSTs
	n, logs := newNotifier(t, &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: good.URL, Secret: secret}, {URL: down.URL, Secret: secret}}})
	res, err := n.Test(context.Background(), notify.ChannelWebhook)
	if err != nil || len(res) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	if res[0].Target != good.URL || res[0].Err != nil || res[1].Target != down.URL || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "HTTP 503 Service Unavailable") {
		t.Fatalf("results %+v", res)
	}
	if len(down.Hooks()) != 1 {
		t.Fatalf("a test is one attempt, got %d", len(down.Hooks()))
	}
	if !strings.Contains(logs.String(), `"msg":"notification failed","event":"test","channel":"webhook","target":"`+down.URL+`"`) {
		t.Fatalf("log:\n%s", logs)
	}
}

// OnResult sees each delivery's final outcome once (the server's metric).
func TestOnResultCountsOutcomes(t *testing.T) {
	good := notifytest.StartWebhookReceiver(t, secret, 0)
	bad := notifytest.StartWebhookReceiver(t, secret, 1000)
	cfg := &notify.Config{Webhooks: []*notify.WebhookConfig{{URL: good.URL, Secret: secret}, {URL: bad.URL, Secret: secret, Attempts: 2}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := notify.New(cfg, "alpha", slog.New(slog.NewJSONHandler(&syncBuf{}, nil)), nil)
	n.SetRetryBase(time.Millisecond)
	var mu sync.Mutex
	var got []string
	n.OnResult(func(kind string, r notify.Result) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, kind+"/"+r.Target+"/"+notify.ResultLabel(r))
	})
	n.Start()
	t.Cleanup(n.Close)
	n.Send(notify.Event{Kind: notify.MemberDown, Member: "bravo"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Flush(ctx)
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"member_down/" + good.URL + "/sent": true, "member_down/" + bad.URL + "/failed": true}
	if len(got) != 2 || !want[got[0]] || !want[got[1]] {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
}
