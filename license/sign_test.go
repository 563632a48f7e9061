package license

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignParseVerifyRoundtrip(t *testing.T) {
	pub, priv := testKey(1)
	data := mustSign(t, validBody(), priv)
	f := mustParse(t, data)
	if err := f.Verify([]ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if f.KeyID != KeyID(pub) {
		t.Errorf("KeyID = %q, want %q", f.KeyID, KeyID(pub))
	}
	want := validBody().normalized()
	if got, _ := json.Marshal(f.Body); !bytes.Equal(got, mustJSON(t, want)) {
		t.Errorf("parsed body\n%s\nwant\n%s", got, mustJSON(t, want))
	}
	if !bytes.Equal(f.BodyBytes, mustJSON(t, want)) {
		t.Errorf("BodyBytes are not the canonical encoding")
	}
	// The comment lines are for people and must say what the license is.
	for _, s := range []string{"# Serial:      TRI-2026-0001", "# Issued to:   Acme Engineering GmbH",
		"until 2027-01-01 23:59:59 UTC", "cad version 5: 10 seats, concurrent, hard limit, grace 2h, no borrowing",
		"cad.render version 2: 3 seats, named-user, soft (overdraft 2) limit, grace 10m, borrow up to 72h"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("file does not contain %q:\n%s", s, data)
		}
	}
}

func mustJSON(t *testing.T, b Body) []byte {
	t.Helper()
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSignNormalises(t *testing.T) {
	_, priv := testKey(1)
	b := validBody()
	zone := time.FixedZone("CET", 3600)
	b.FormatVersion = 0
	b.IssuedAt = time.Date(2026, 1, 1, 10, 0, 0, 123456789, zone)
	b.Supersedes = nil
	f := mustParse(t, mustSign(t, b, priv))
	if got, want := f.Body.IssuedAt, time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC || got.Nanosecond() != 0 {
		t.Errorf("IssuedAt = %v, want %v in UTC, whole seconds", got, want)
	}
	if f.Body.FormatVersion != FormatVersion {
		t.Errorf("FormatVersion = %d, want %d", f.Body.FormatVersion, FormatVersion)
	}
	if ft := f.Body.Features[0]; ft.Model != ModelConcurrent || ft.Limit != LimitHard || ft.Grace() != 2*time.Hour || ft.MaxBorrow() != 0 {
		t.Errorf("defaults not filled: %+v (grace %v)", ft, ft.Grace())
	}
	if !bytes.Contains(f.BodyBytes, []byte(`"supersedes":[]`)) {
		t.Errorf("nil supersedes should encode as []: %s", f.BodyBytes)
	}
}

func TestSignRefuses(t *testing.T) {
	_, priv := testKey(1)
	bad := validBody()
	bad.Features[0].Count = 0
	if _, err := Sign(bad, priv); err == nil || !strings.Contains(err.Error(), "count is 0") {
		t.Errorf("Sign(invalid body) = %v, want a count error", err)
	}
	if _, err := Sign(validBody(), priv[:10]); err == nil || !strings.Contains(err.Error(), "private key is 10 bytes") {
		t.Errorf("Sign(short key) = %v, want a key length error", err)
	}
}

func TestVerify(t *testing.T) {
	pub, priv := testKey(1)
	other, _ := testKey(2)
	f := mustParse(t, mustSign(t, validBody(), priv))

	tests := []struct {
		name    string
		trusted []ed25519.PublicKey
		kind    error
		substrs []string
	}{
		{"right key", []ed25519.PublicKey{pub}, nil, nil},
		{"right key among several", []ed25519.PublicKey{other, pub}, nil, nil},
		{"wrong key", []ed25519.PublicKey{other}, ErrSignature,
			[]string{"does not verify against any trusted vendor key", "license key id " + KeyID(pub), "trusted: " + KeyID(other)}},
		{"two wrong keys are both named", []ed25519.PublicKey{other, ed25519.PublicKey(make([]byte, 32))}, ErrSignature,
			[]string{"trusted: " + KeyID(other) + ", " + KeyID(make([]byte, 32))}},
		{"malformed trusted key does not panic", []ed25519.PublicKey{pub[:5]}, ErrSignature, nil},
		{"empty trust list", nil, ErrNoTrustedKey, []string{"start the member with --trust VENDOR.pub"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.Verify(tt.trusted)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			wantErr(t, err, tt.kind, tt.substrs...)
		})
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	pub, priv := testKey(1)
	trusted := []ed25519.PublicKey{pub}
	orig := mustParse(t, mustSign(t, validBody(), priv))

	// Every single-byte change to the signed bytes or the signature fails.
	for i := range orig.BodyBytes {
		f := *orig
		f.BodyBytes = bytes.Clone(orig.BodyBytes)
		f.BodyBytes[i] ^= 0x01
		if err := f.Verify(trusted); !errors.Is(err, ErrSignature) {
			t.Fatalf("body byte %d flipped: Verify = %v, want ErrSignature", i, err)
		}
	}
	for i := range orig.Signature {
		f := *orig
		f.Signature = bytes.Clone(orig.Signature)
		f.Signature[i] ^= 0x80
		if err := f.Verify(trusted); !errors.Is(err, ErrSignature) {
			t.Fatalf("signature byte %d flipped: Verify = %v, want ErrSignature", i, err)
		}
	}

	// The realistic attack: a customer raises the count, re-encodes the body
	// and keeps the signature. The file still parses; only Verify catches it.
	edited := bytes.Replace(orig.BodyBytes, []byte(`"count":10`), []byte(`"count":99`), 1)
	if bytes.Equal(edited, orig.BodyBytes) {
		t.Fatal("test body has no count 10 to edit")
	}
	f := mustParse(t, rawFile(edited, orig.KeyID, orig.Signature))
	if f.Body.Features[0].Count != 99 {
		t.Fatalf("edited count = %d, want 99", f.Body.Features[0].Count)
	}
	wantErr(t, f.Verify(trusted), ErrSignature)
}
