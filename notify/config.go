package notify

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// Config is the notification part of a member's configuration (the
// "notify" object of the config file; docs/notifications.md lists every
// key). Secrets are read from files (or given inline in the config file)
// and are never printed back or logged.
type Config struct {
	SMTP     *SMTPConfig      `json:"smtp,omitempty"`
	Webhooks []*WebhookConfig `json:"webhooks,omitempty"`
	// Events enables, disables and re-words each event, by kind. An event
	// not listed is enabled with the default templates.
	Events map[string]*EventConfig `json:"events,omitempty"`
	// DiskPercent: the disk_usage event fires when the data directory's
	// file system is this full (1-99, default 80), and again at every
	// further whole percent while it stays at or above it.
	DiskPercent int `json:"disk_percent,omitempty"`
	// DiskCheckInterval: how often the data disk is measured ("30s").
	DiskCheckInterval Duration `json:"disk_check_interval,omitempty"`
	// ExpiryHour: the local hour (0-23) the daily license_expiring message
	// is sent at. Default 1 (01:00), as in the seeds' product.
	ExpiryHour *int `json:"expiry_hour,omitempty"`
	// QuorumLostAfter: how long a member must see no leader before it
	// sends quorum_lost ("10s"), so an ordinary election sends nothing.
	QuorumLostAfter Duration `json:"quorum_lost_after,omitempty"`
}

// SMTPConfig is the mail channel.
type SMTPConfig struct {
	// Server is HOST or HOST:PORT (port 25 when omitted, as in the seeds).
	Server string   `json:"server"`
	From   string   `json:"from"`
	To     []string `json:"to"`
	// StartTLS upgrades the connection with STARTTLS before anything else
	// is sent; the server must offer it. TLS instead opens the connection
	// in TLS (SMTPS, usually port 465). At most one of them.
	StartTLS bool `json:"starttls,omitempty"`
	TLS      bool `json:"tls,omitempty"`
	// TLSCA: PEM file of CAs that sign the mail server's certificate
	// (default: the system's roots).
	TLSCA string `json:"tls_ca,omitempty"`
	// Username and password (PLAIN or LOGIN), only over TLS or STARTTLS.
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
	// Auth is plain (default) or login.
	Auth string `json:"auth,omitempty"`
	// Timeout bounds one whole delivery attempt: connect, dialogue, data
	// ("10s").
	Timeout Duration `json:"timeout,omitempty"`
	// Attempts: tries per message, with exponential backoff (1-10, default 3).
	Attempts int `json:"attempts,omitempty"`

	roots *x509.CertPool
}

// WebhookConfig is one webhook endpoint.
type WebhookConfig struct {
	URL string `json:"url"`
	// Secret (or SecretFile) is the HMAC-SHA256 key of the signature
	// header; required, one per endpoint.
	Secret     string `json:"secret,omitempty"`
	SecretFile string `json:"secret_file,omitempty"`
	// TLSCA: PEM file of CAs that sign an https endpoint's certificate.
	TLSCA string `json:"tls_ca,omitempty"`
	// Timeout bounds one POST ("5s").
	Timeout Duration `json:"timeout,omitempty"`
	// Attempts: tries per message, with exponential backoff (1-10, default 5).
	Attempts int `json:"attempts,omitempty"`

	roots *x509.CertPool
}

// EventConfig is one event's switch and templates (Go text/template; the
// fields are those of Event).
type EventConfig struct {
	// Enabled defaults to true.
	Enabled *bool  `json:"enabled,omitempty"`
	Subject string `json:"subject,omitempty"`
	Body    string `json:"body,omitempty"`
}

// Duration is a time.Duration written as "10s" in JSON.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration like \"10s\" or \"2m\"", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// Defaults.
const (
	DefaultDiskPercent       = 80
	DefaultDiskCheckInterval = 30 * time.Second
	DefaultExpiryHour        = 1
	DefaultQuorumLostAfter   = 10 * time.Second
	DefaultSMTPTimeout       = 10 * time.Second
	DefaultSMTPAttempts      = 3
	DefaultWebhookTimeout    = 5 * time.Second
	DefaultWebhookAttempts   = 5
	maxAttempts              = 10
)

// Enabled reports whether a channel is configured at all.
func (c *Config) Enabled() bool { return c != nil && (c.SMTP != nil || len(c.Webhooks) > 0) }

// EventEnabled reports whether kind is sent.
func (c *Config) EventEnabled(kind string) bool {
	if !c.Enabled() {
		return false
	}
	if e := c.Events[kind]; e != nil && e.Enabled != nil {
		return *e.Enabled
	}
	return true
}

// Validate fills the defaults, reads the secret files and CA bundles, and
// parses the templates. Every error names the key at fault.
func (c *Config) Validate() error {
	if c.DiskPercent == 0 {
		c.DiskPercent = DefaultDiskPercent
	}
	if c.DiskPercent < 1 || c.DiskPercent > 99 {
		return fmt.Errorf("notify.disk_percent %d is out of range: use 1 to 99", c.DiskPercent)
	}
	if c.DiskCheckInterval <= 0 {
		c.DiskCheckInterval = Duration(DefaultDiskCheckInterval)
	}
	if c.ExpiryHour == nil {
		h := DefaultExpiryHour
		c.ExpiryHour = &h
	}
	if *c.ExpiryHour < 0 || *c.ExpiryHour > 23 {
		return fmt.Errorf("notify.expiry_hour %d is out of range: use 0 to 23 (local hour of the daily expiry message)", *c.ExpiryHour)
	}
	if c.QuorumLostAfter <= 0 {
		c.QuorumLostAfter = Duration(DefaultQuorumLostAfter)
	}
	if s := c.SMTP; s != nil {
		if err := s.validate(); err != nil {
			return err
		}
	}
	for i, w := range c.Webhooks {
		if err := w.validate(i); err != nil {
			return err
		}
	}
	kinds := make([]string, 0, len(c.Events))
	for k := range c.Events {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if _, ok := defaults[k]; !ok {
			return fmt.Errorf("notify.events: unknown event %q: use one of %s", k, strings.Join(Kinds(), ", "))
		}
		e := c.Events[k]
		if e == nil {
			continue
		}
		for what, text := range map[string]string{"subject": e.Subject, "body": e.Body} {
			if text == "" {
				continue
			}
			if _, err := render(what, text, sample(k)); err != nil {
				return fmt.Errorf("notify.events.%s.%s: %v (the fields are listed in docs/notifications.md)", k, what, err)
			}
		}
	}
	return nil
}

func (s *SMTPConfig) validate() error {
	if s.Server == "" {
		return fmt.Errorf("notify.smtp.server is empty: give the mail server as HOST or HOST:PORT")
	}
	if _, _, err := net.SplitHostPort(s.Server); err != nil {
		if strings.Contains(s.Server, ":") && !strings.HasPrefix(s.Server, "[") {
			return fmt.Errorf("notify.smtp.server %q is not HOST or HOST:PORT: %v", s.Server, err)
		}
		s.Server = net.JoinHostPort(strings.Trim(s.Server, "[]"), "25")
	}
	if s.From == "" {
		return fmt.Errorf("notify.smtp.from is empty: give the sender address, like triad@example.com")
	}
	if err := checkAddress("notify.smtp.from", s.From); err != nil {
		return err
	}
	if len(s.To) == 0 {
		return fmt.Errorf("notify.smtp.to is empty: give at least one recipient address")
	}
	for _, to := range s.To {
		if err := checkAddress("notify.smtp.to", to); err != nil {
			return err
		}
	}
	if s.StartTLS && s.TLS {
		return fmt.Errorf("notify.smtp: starttls and tls exclude each other: use starttls on port 587 (or 25), tls on port 465")
	}
	if s.PasswordFile != "" {
		if s.Password != "" {
			return fmt.Errorf("notify.smtp: give password or password_file, not both")
		}
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return fmt.Errorf("notify.smtp.password_file: %v", err)
		}
		s.Password = strings.TrimRight(string(b), "\r\n")
	}
	switch {
	case s.Username == "" && s.Password != "":
		return fmt.Errorf("notify.smtp: a password is set but no username: set notify.smtp.username")
	case s.Username != "" && s.Password == "":
		return fmt.Errorf("notify.smtp: username %q has no password: set notify.smtp.password_file", s.Username)
	case s.Username != "" && !s.StartTLS && !s.TLS:
		return fmt.Errorf("notify.smtp: authentication needs starttls or tls (the password would cross the network in clear): set notify.smtp.starttls")
	}
	switch s.Auth {
	case "":
		s.Auth = "plain"
	case "plain", "login":
	default:
		return fmt.Errorf("notify.smtp.auth %q: use plain or login", s.Auth)
	}
	if s.Timeout <= 0 {
		s.Timeout = Duration(DefaultSMTPTimeout)
	}
	if s.Attempts == 0 {
		s.Attempts = DefaultSMTPAttempts
	}
	if s.Attempts < 1 || s.Attempts > maxAttempts {
		return fmt.Errorf("notify.smtp.attempts %d is out of range: use 1 to %d", s.Attempts, maxAttempts)
	}
	var err error
	if s.roots, err = loadRoots("notify.smtp.tls_ca", s.TLSCA); err != nil {
		return err
	}
	return nil
}

func checkAddress(key, a string) error {
	if strings.ContainsAny(a, "\r\n<>, ") || !strings.Contains(a, "@") {
		return fmt.Errorf("%s %q is not a mail address like name@example.com", key, a)
	}
	return nil
}

func (w *WebhookConfig) validate(i int) error {
	key := fmt.Sprintf("notify.webhooks[%d]", i)
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s.url %q is not an http(s) URL", key, redactURL(w.URL))
	}
	if w.SecretFile != "" {
		if w.Secret != "" {
			return fmt.Errorf("%s: give secret or secret_file, not both", key)
		}
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return fmt.Errorf("%s.secret_file: %v", key, err)
		}
		w.Secret = strings.TrimRight(string(b), "\r\n")
	}
	if len(w.Secret) < 16 {
		return fmt.Errorf("%s: the signing secret is missing or shorter than 16 bytes: set %s.secret_file to a file holding a long random string (openssl rand -hex 32)", key, key)
	}
	if w.Timeout <= 0 {
		w.Timeout = Duration(DefaultWebhookTimeout)
	}
	if w.Attempts == 0 {
		w.Attempts = DefaultWebhookAttempts
	}
	if w.Attempts < 1 || w.Attempts > maxAttempts {
		return fmt.Errorf("%s.attempts %d is out of range: use 1 to %d", key, w.Attempts, maxAttempts)
	}
	if w.roots, err = loadRoots(key+".tls_ca", w.TLSCA); err != nil {
		return err
	}
	return nil
}

func loadRoots(key, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, path)
	}
	return pool, nil
}

func tlsConfig(serverName string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// redactURL drops a URL's user information and query (they may hold
// credentials), for logs and status output.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}

// Summary is the configuration as shown back to administrators: no secret,
// only whether one is set.
type Summary struct {
	SMTPServer      string
	From            string
	To              []string
	StartTLS, TLS   bool
	Username        string
	PasswordSet     bool
	Webhooks        []WebhookSummary
	Events          map[string]bool
	DiskPercent     int
	ExpiryHour      int
	QuorumLostAfter time.Duration
}

// WebhookSummary is one endpoint without its secret.
type WebhookSummary struct {
	URL       string
	SecretSet bool
}

// Summary returns the redacted configuration.
func (c *Config) Summary() Summary {
	out := Summary{Events: map[string]bool{}, DiskPercent: c.DiskPercent, QuorumLostAfter: time.Duration(c.QuorumLostAfter)}
	if c.ExpiryHour != nil {
		out.ExpiryHour = *c.ExpiryHour
	}
	if s := c.SMTP; s != nil {
		out.SMTPServer, out.From, out.To = s.Server, s.From, append([]string(nil), s.To...)
		out.StartTLS, out.TLS, out.Username, out.PasswordSet = s.StartTLS, s.TLS, s.Username, s.Password != ""
	}
	for _, w := range c.Webhooks {
		out.Webhooks = append(out.Webhooks, WebhookSummary{URL: redactURL(w.URL), SecretSet: w.Secret != ""})
	}
	for _, k := range Kinds() {
		out.Events[k] = c.EventEnabled(k)
	}
	return out
}
