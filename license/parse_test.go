package license

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseCorrupt(t *testing.T) {
	pub, priv := testKey(1)
	good := mustSign(t, validBody(), priv)
	f := mustParse(t, good)
	body := string(f.BodyBytes)
	b64 := base64.StdEncoding.EncodeToString
	id := KeyID(pub)
	sig := b64(f.Signature)

	// withBody re-signs an edited body, so only the edit can be the problem.
	withBody := func(old, new string) []byte {
		if !strings.Contains(body, old) {
			t.Fatalf("canonical body does not contain %q", old)
		}
		return signedRaw([]byte(strings.Replace(body, old, new, 1)))
	}
	dropLine := func(prefix string) []byte {
		var out []string
		for _, l := range strings.Split(string(good), "\n") {
			if !strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return []byte(strings.Join(out, "\n"))
	}

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "missing 'body:' line"},
		{"too large", bytes.Repeat([]byte("#"), MaxFileSize+1), "larger than the 1 MiB"},
		{"missing body", dropLine("body:"), "missing 'body:' line"},
		{"missing key-id", dropLine("key-id:"), "missing 'key-id:' line"},
		{"missing signature", dropLine("signature:"), "missing 'signature:' line"},
		{"duplicate line", append(bytes.Clone(good), []byte("key-id: "+id+"\n")...), "the 'key-id:' line appears twice"},
		{"unknown field", append(bytes.Clone(good), []byte("expires: tomorrow\n")...), `unknown field "expires"`},
		{"stray text before fields", []byte("hello\n" + string(good)), "line 1 is neither a comment"},
		{"body not base64", []byte("body: ***\nkey-id: " + id + "\nsignature: " + sig), "body is not valid base64"},
		{"signature not base64", []byte("body: " + b64([]byte(body)) + "\nkey-id: " + id + "\nsignature: ***"), "signature is not valid base64"},
		{"signature too short", []byte("body: " + b64([]byte(body)) + "\nkey-id: " + id + "\nsignature: " + b64([]byte("short"))), "signature is 5 bytes, want 64"},
		{"key-id not hex", []byte("body: " + b64([]byte(body)) + "\nkey-id: zz\nsignature: " + sig), `key-id "zz" is not 16 hex digits`},
		{"key-id too long", []byte("body: " + b64([]byte(body)) + "\nkey-id: " + id + "00\nsignature: " + sig), "is not 16 hex digits"},
		{"body not JSON", signedRaw([]byte("not json")), "body is not valid JSON"},
		{"body JSON with trailing data", signedRaw([]byte(body + "{}")), "body is not valid JSON"},
		{"body wrong JSON type", withBody(`"count":10`, `"count":"ten"`), "body is not valid JSON"},
		{"no format_version", withBody(`"format_version":1,`, ``), "body has no format_version"},
		{"future format_version", withBody(`"format_version":1`, `"format_version":2`), "format_version 2, but this version of Triad reads only format_version 1"},
		{"unknown body field", withBody(`"serial"`, `"restrictions":"eu-only","serial"`), `unknown field "restrictions"`},
		{"fails Validate", withBody(`"count":10`, `"count":0`), "body is not a valid license: features[0] (cad version 5): count is 0"},
		{"not canonical: whitespace", withBody(`"serial":`, `"serial": `), "not in the canonical form"},
		{"not canonical: time zone", withBody(`"2026-01-01T09:00:00Z"`, `"2026-01-01T10:00:00+01:00"`), "not in the canonical form"},
		{"not canonical: missing default", withBody(`"model":"concurrent",`, ``), "not in the canonical form"},
		{"not canonical: field name case", withBody(`"serial"`, `"Serial"`), "not in the canonical form"},
		{"not canonical: duplicate key", withBody(`"serial":"TRI-2026-0001"`, `"serial":"X","serial":"TRI-2026-0001"`), "not in the canonical form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(tt.data)
			if f != nil {
				t.Errorf("Parse returned a File along with the error")
			}
			wantErr(t, err, ErrCorrupt, "license file is corrupt: ", tt.want)
			if tt.name != "too large" && tt.name != "future format_version" && !strings.HasSuffix(err.Error(), "; ask the vendor for a new copy of the file") {
				t.Errorf("error %q does not end with the advice", err)
			}
		})
	}
}

func TestParseToleratesMangling(t *testing.T) {
	pub, priv := testKey(1)
	good := mustSign(t, validBody(), priv)
	want := mustParse(t, good)

	wrap := func(data []byte) []byte { // wrap long lines at 60 columns, as mail clients do
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			for len(l) > 60 && !strings.HasPrefix(l, "#") {
				out, l = append(out, l[:60]), l[60:]
			}
			out = append(out, l)
		}
		return []byte(strings.Join(out, "\n"))
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"CRLF", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))},
		{"indented and trailing spaces", bytes.ReplaceAll(good, []byte("\n"), []byte("  \t\n    "))},
		{"byte-order mark", append([]byte("\xef\xbb\xbf"), good...)},
		{"blank lines and no final newline", append([]byte("\n\n"), bytes.TrimSpace(bytes.ReplaceAll(good, []byte("\n"), []byte("\n\n")))...)},
		{"upper-case field names", bytes.Replace(bytes.Replace(good, []byte("body:"), []byte("Body:"), 1), []byte("key-id: "+KeyID(pub)), []byte("KEY-ID: "+strings.ToUpper(KeyID(pub))), 1)},
		{"wrapped base64, CRLF", bytes.ReplaceAll(wrap(good), []byte("\n"), []byte("\r\n"))},
		{"comments removed", func() []byte {
			var out []string
			for _, l := range strings.Split(string(good), "\n") {
				if !strings.HasPrefix(l, "#") {
					out = append(out, l)
				}
			}
			return []byte(strings.Join(out, "\n"))
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.data)
			if !bytes.Equal(f.BodyBytes, want.BodyBytes) || !bytes.Equal(f.Signature, want.Signature) || f.KeyID != want.KeyID {
				t.Fatalf("mangled file parsed differently: key id %q, body %s", f.KeyID, f.BodyBytes)
			}
			if err := f.Verify([]ed25519.PublicKey{pub}); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestDescribeSanitises(t *testing.T) {
	b := validBody()
	b.IssuedTo = "Evil\nsignature: AAAA"
	b.Description = "bad\xffutf8"
	for _, l := range Describe(&b) {
		if strings.ContainsAny(l, "\n\r\xff") {
			t.Errorf("line %q carries a control character or bad UTF-8", l)
		}
	}
	if got := Describe(&b)[1]; got != "Issued to:   Evil?signature: AAAA" {
		t.Errorf("issued-to line = %q", got)
	}
}
