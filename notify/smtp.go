package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"os"
	"strings"
	"time"
)

// sendMail delivers one message to every recipient in one SMTP session,
// within s.Timeout. The error says which step failed and carries the
// server's reply (e.g. "authentication: 535 5.7.8 ...").
func (s *SMTPConfig) sendMail(ctx context.Context, helo, subject, body string, now time.Time) error {
	host, _, _ := net.SplitHostPort(s.Server)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.Timeout))
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", s.Server)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.Server, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancelled context (member stopping) ends the dialogue too.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if s.TLS {
		tc := tls.Client(conn, tlsConfig(host, s.roots))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS with %s: %w", s.Server, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", s.Server, err)
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if s.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%s does not offer STARTTLS (notify.smtp.starttls is set): enable it on the mail server or use notify.smtp.tls for port 465", s.Server)
		}
		if err := c.StartTLS(tlsConfig(host, s.roots)); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("%s does not offer AUTH but notify.smtp.username is set", s.Server)
		}
		var a smtp.Auth = smtp.PlainAuth("", s.Username, s.Password, host)
		if s.Auth == "login" {
			a = &loginAuth{user: s.Username, pass: s.Password}
		}
		if err := c.Auth(a); err != nil {
			return fmt.Errorf("authentication as %s: %w", s.Username, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("MAIL FROM %s: %w", s.From, err)
	}
	for _, to := range s.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(message(s.From, s.To, subject, body, helo, now)); err != nil {
		return fmt.Errorf("sending the message: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of message: %w", err)
	}
	if err := c.Quit(); err != nil {
		// The message was accepted at the end of DATA; a failed QUIT
		// does not undo it.
		return nil
	}
	return nil
}

// message is an RFC 5322 text message in UTF-8, quoted-printable.
func message(from string, to []string, subject, body, host string, now time.Time) []byte {
	var b bytes.Buffer
	id := make([]byte, 12)
	rand.Read(id)
	if host == "" {
		host, _ = os.Hostname()
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nAuto-Submitted: auto-generated\r\n\r\n",
		from, strings.Join(to, ", "), mime.QEncoding.Encode("utf-8", subject), now.Format(time.RFC1123Z), hex.EncodeToString(id), host)
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")))
	qp.Close()
	return b.Bytes()
}

// loginAuth is the LOGIN mechanism (username and password, base64 by the
// smtp package, one prompt each), only over TLS.
type loginAuth struct {
	user, pass string
	step       int
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing LOGIN authentication over an unencrypted connection")
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch p := strings.ToLower(strings.TrimSpace(string(fromServer))); {
	case strings.HasPrefix(p, "user") || (p == "" && a.step == 1):
		return []byte(a.user), nil
	case strings.HasPrefix(p, "pass") || (p == "" && a.step == 2):
		return []byte(a.pass), nil
	default:
		return nil, fmt.Errorf("unexpected LOGIN prompt %q", fromServer)
	}
}
