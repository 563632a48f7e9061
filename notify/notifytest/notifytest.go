// Package notifytest runs a real SMTP server (github.com/emersion/go-smtp)
// and a webhook receiver that checks the HMAC signature as
// docs/notifications.md documents it, for the tests of package notify and
// the integration tests. Only tests import it.
package notifytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/triadlm/triad/server/pki"
)

// Mail is one message the server accepted.
type Mail struct {
	From    string
	To      []string
	Subject string
	Body    string
	Header  mail.Header
	// TLS: the session was encrypted (STARTTLS or SMTPS); User: who
	// authenticated ("" for nobody); Mech: the SASL mechanism used.
	TLS        bool
	User, Mech string
}

// MailOptions configures the server.
type MailOptions struct {
	// TLS enables STARTTLS (or SMTPS with Implicit).
	TLS      *tls.Config
	Implicit bool
	// User and Password, when set, are required (AUTH PLAIN or LOGIN)
	// before MAIL FROM.
	User, Password string
}

// MailServer is a running SMTP server on 127.0.0.1.
type MailServer struct {
	Addr string
	opt  MailOptions
	srv  *smtp.Server

	mu    sync.Mutex
	mails []Mail
	// AuthFailures counts refused logins.
	authFailures int
}

// StartMailServer starts a server and stops it when t ends.
func StartMailServer(t testing.TB, opt MailOptions) *MailServer {
	t.Helper()
	m := &MailServer{opt: opt}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, tlsOn := c.TLSConnectionState()
		return &session{m: m, conn: c, tls: tlsOn}, nil
	}))
	s.Domain = "mail.test"
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	s.TLSConfig = opt.TLS
	s.AllowInsecureAuth = false
	var l net.Listener
	var err error
	if opt.Implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", opt.TLS)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	m.Addr, m.srv = l.Addr().String(), s
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return m
}

// Mails returns the messages accepted so far.
func (m *MailServer) Mails() []Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mail(nil), m.mails...)
}

// AuthFailures is the number of refused logins.
func (m *MailServer) AuthFailures() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.authFailures
}

// WaitMail polls until a message satisfies match, or fails t after d.
func (m *MailServer) WaitMail(t testing.TB, d time.Duration, what string, match func(Mail) bool) Mail {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, ml := range m.Mails() {
			if match(ml) {
				return ml
			}
		}
		if time.Now().After(deadline) {
			var subjects []string
			for _, ml := range m.Mails() {
				subjects = append(subjects, ml.Subject)
			}
			t.Fatalf("no mail %s within %s; received: %q", what, d, subjects)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type session struct {
	m          *MailServer
	conn       *smtp.Conn
	tls        bool
	user, mech string
	from       string
	to         []string
}

func (s *session) AuthMechanisms() []string {
	if s.m.opt.User == "" {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) check(mech, user, pass string) error {
	if user != s.m.opt.User || pass != s.m.opt.Password {
		s.m.mu.Lock()
		s.m.authFailures++
		s.m.mu.Unlock()
		return smtp.ErrAuthFailed
	}
	s.user, s.mech = user, mech
	return nil
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return s.check(mech, user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: func(user, pass string) error { return s.check(mech, user, pass) }}, nil
	}
	return nil, smtp.ErrAuthUnsupported
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.m.opt.User != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(msg.Body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return err
	}
	_, tlsOn := s.conn.TLSConnectionState()
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, Mail{From: s.from, To: append([]string(nil), s.to...), Subject: subject,
		Body: strings.ReplaceAll(string(b), "\r\n", "\n"), Header: msg.Header, TLS: tlsOn || s.tls, User: s.user, Mech: s.mech})
	s.m.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl has only the client).
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response != nil {
			l.user = string(response)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("unexpected LOGIN step")
}

// Hook is one POST the receiver got.
type Hook struct {
	Event    string
	Delivery string
	Body     []byte
	Payload  map[string]any
	// SigErr is why the signature was refused (nil: verified).
	SigErr error
	Status int
}

// WebhookReceiver is an HTTP endpoint that checks each POST's
// X-Triad-Signature with its own HMAC code (independent of package
// notify): t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>, t within
// 5 minutes. It answers 401 to a bad signature, and 503 to the first
// FailFirst POSTs.
type WebhookReceiver struct {
	URL    string
	Secret []byte
	srv    *httptest.Server

	mu        sync.Mutex
	hooks     []Hook
	failFirst int
}

// StartWebhookReceiver starts a receiver with secret; failFirst POSTs get 503.
func StartWebhookReceiver(t testing.TB, secret string, failFirst int) *WebhookReceiver {
	w := &WebhookReceiver{Secret: []byte(secret), failFirst: failFirst}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	w.URL = w.srv.URL + "/hook"
	t.Cleanup(w.srv.Close)
	return w
}

func (w *WebhookReceiver) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h := Hook{Event: r.Header.Get("X-Triad-Event"), Delivery: r.Header.Get("X-Triad-Delivery"), Body: body}
	h.SigErr = checkSignature(w.Secret, r.Header.Get("X-Triad-Signature"), body, time.Now())
	json.Unmarshal(body, &h.Payload)
	w.mu.Lock()
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
		h.Status = http.StatusBadRequest
	case h.SigErr != nil:
		h.Status = http.StatusUnauthorized
	case w.failFirst > 0:
		w.failFirst--
		h.Status = http.StatusServiceUnavailable
	default:
		h.Status = http.StatusOK
	}
	w.hooks = append(w.hooks, h)
	w.mu.Unlock()
	rw.WriteHeader(h.Status)
	if h.SigErr != nil {
		fmt.Fprintf(rw, "bad signature: %v", h.SigErr)
	}
}

func checkSignature(secret []byte, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, p := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(p, "t="); ok {
			ts = v
		}
		if v, ok := strings.CutPrefix(p, "v1="); ok {
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("no t= or v1= in %q", header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %d is %s from now", sec, d)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return errors.New("HMAC mismatch")
	}
	return nil
}

// Hooks returns every POST received (refused ones included).
func (w *WebhookReceiver) Hooks() []Hook {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Hook(nil), w.hooks...)
}

// WaitHook polls until an accepted (verified, 200) POST satisfies match.
func (w *WebhookReceiver) WaitHook(t testing.TB, d time.Duration, what string, match func(Hook) bool) Hook {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, h := range w.Hooks() {
			if h.Status == http.StatusOK && match(h) {
				return h
			}
		}
		if time.Now().After(deadline) {
			var got []string
			for _, h := range w.Hooks() {
				got = append(got, fmt.Sprintf("%s/%d", h.Event, h.Status))
			}
			t.Fatalf("no verified webhook %s within %s; received: %v", what, d, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ServerTLS is a TLS configuration for a test server on 127.0.0.1 and
// localhost, with a certificate of ca.
func ServerTLS(t testing.TB, ca *pki.CA) *tls.Config {
	t.Helper()
	is, err := ca.Issue(pki.Member, "mail.test", []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
