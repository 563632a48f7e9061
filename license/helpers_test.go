package license

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// testKey is a fixed key pair, so fuzz seeds and golden values are stable.
func testKey(seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func validBody() Body {
	return Body{
		Serial:     "TRI-2026-0001",
		IssuedTo:   "Acme Engineering GmbH",
		IssuedAt:   time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC),
		ValidAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		ValidUntil: time.Date(2027, 1, 1, 23, 59, 59, 0, time.UTC),
		Supersedes: []string{"TRI-2025-0007"},
		Binding:    Binding{Mode: ModeFailover, ComputerIDs: []string{"id-a", "id-b", "id-c"}},
		Features: []Feature{
			{Name: "cad", Version: 5, Count: 10},
			{Name: "cad.render", Version: 2, Count: 3, Model: ModelNamedUser, GraceSeconds: 600, MaxBorrowSeconds: 72 * 3600, Limit: LimitSoft, Overdraft: 2},
		},
		Description: "Annual subscription",
	}
}

func mustSign(t testing.TB, b Body, priv ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Sign(b, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

func mustParse(t testing.TB, data []byte) *File {
	t.Helper()
	f, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

// rawFile writes the three fields by hand, for files Sign would refuse to make.
func rawFile(body []byte, keyID string, sig []byte) []byte {
	return []byte("# hand-made\nbody: " + base64.StdEncoding.EncodeToString(body) +
		"\nkey-id: " + keyID + "\nsignature: " + base64.StdEncoding.EncodeToString(sig) + "\n")
}

// signedRaw signs arbitrary body bytes, so tests can reach the checks that
// come after the signature-independent ones.
func signedRaw(body []byte) []byte {
	pub, priv := testKey(1)
	return rawFile(body, KeyID(pub), ed25519.Sign(priv, body))
}

func wantErr(t *testing.T, err, kind error, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", kind)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Fatalf("error %q does not wrap %q", err, kind)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}
