package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook headers. The signature header is
//
//	X-Triad-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
//
// A receiver recomputes the HMAC over the timestamp, a dot and the raw
// body with its endpoint's secret, compares in constant time, and refuses
// a timestamp too far from its clock (replay); Verify does all three.
const (
	SignatureHeader = "X-Triad-Signature"
	EventHeader     = "X-Triad-Event"
	DeliveryHeader  = "X-Triad-Delivery"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock in Verify.
const DefaultTolerance = 5 * time.Minute

// Sign returns the signature header value of body at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a signature header against body and secret, and that its
// timestamp is within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("malformed signature header %q", header)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("signature header %q lacks t= or v1=", header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp %s is %s away from now (more than %s): replayed or clocks apart", time.Unix(sec, 0).UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return fmt.Errorf("signature does not match the body (wrong secret or altered body)")
}

// Payload is the JSON body of a webhook POST.
type Payload struct {
	Event     string `json:"event"`
	Delivery  string `json:"delivery"`
	Timestamp int64  `json:"timestamp"`
	Time      string `json:"time"`
	Sender    string `json:"sender"`
	Member    string `json:"member,omitempty"`
	Leader    string `json:"leader,omitempty"`
	Subject   string `json:"subject"`
	Text      string `json:"text"`
	Message   string `json:"message,omitempty"`
	Since     string `json:"since,omitempty"`
	// disk_usage
	DiskPercent   int    `json:"disk_percent,omitempty"`
	DiskThreshold int    `json:"disk_threshold,omitempty"`
	DataDir       string `json:"data_dir,omitempty"`
	// licenses_expiring
	Licenses    []PayloadLicense `json:"licenses,omitempty"`
	WarningDays int              `json:"warning_days,omitempty"`
	// feature_over_capacity, countdown_pool_low
	Feature string `json:"feature,omitempty"`
}

// PayloadLicense is one license of licenses_expiring.
type PayloadLicense struct {
	Serial     string `json:"serial"`
	ValidUntil string `json:"valid_until"`
	DaysLeft   int    `json:"days_left"`
}

func payload(e Event, delivery, subject, text string, sent time.Time) Payload {
	p := Payload{Event: e.Kind, Delivery: delivery, Timestamp: sent.Unix(), Time: e.Time.UTC().Format(time.RFC3339),
		Sender: e.Sender, Member: e.Member, Leader: e.Leader, Subject: subject, Text: text, Message: e.Message,
		DiskPercent: e.DiskPercent, DiskThreshold: e.DiskThreshold, DataDir: e.DataDir, WarningDays: e.WarningDays, Feature: e.Feature}
	if !e.Since.IsZero() {
		p.Since = e.Since.UTC().Format(time.RFC3339)
	}
	for _, l := range e.Licenses {
		p.Licenses = append(p.Licenses, PayloadLicense{Serial: l.Serial, ValidUntil: l.ValidUntil.UTC().Format(time.RFC3339), DaysLeft: l.DaysLeft})
	}
	return p
}

// errPermanent marks an answer a retry cannot change (4xx but 408/429).
type errPermanent struct{ error }

// post sends one signed POST. The timestamp is taken at each attempt, so a
// retried delivery carries a fresh signature.
func (w *WebhookConfig) post(ctx context.Context, client *http.Client, p Payload, now func() time.Time) error {
	t := now()
	p.Timestamp = t.Unix()
	body, err := json.Marshal(p)
	if err != nil {
		return errPermanent{err}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(w.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errPermanent{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "triad-notify/1")
	req.Header.Set(SignatureHeader, Sign([]byte(w.Secret), t, body))
	req.Header.Set(EventHeader, p.Event)
	req.Header.Set(DeliveryHeader, p.Delivery)
	resp, err := client.Do(req)
	if err != nil {
		// client.Do's error quotes the URL, which may hold credentials.
		return fmt.Errorf("POST %s: %s", redactURL(w.URL), strings.ReplaceAll(err.Error(), w.URL, redactURL(w.URL)))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("POST %s: HTTP %s: %s", redactURL(w.URL), resp.Status, strings.TrimSpace(string(snippet)))
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return errPermanent{err}
	}
	return err
}

// Backoff is the delay before retry n (1 = the first retry): base·2^(n-1),
// capped at max, then scaled by jitter (a factor near 1; 1 for none).
func Backoff(n int, base, max time.Duration, jitter float64) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return time.Duration(float64(d) * jitter)
}
