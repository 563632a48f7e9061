package license

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestGenerateKeyDeterministic(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	pub1, priv1, err := GenerateKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, err := GenerateKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if !pub1.Equal(pub2) || !priv1.Equal(ed25519.NewKeyFromSeed(seed)) {
		t.Fatal("GenerateKey is not deterministic in its reader")
	}
	if _, _, err := GenerateKey(bytes.NewReader(seed[:5])); err == nil {
		t.Fatal("GenerateKey with a short reader succeeded")
	}
	if _, _, err := GenerateKey(nil); err != nil {
		t.Fatalf("GenerateKey(nil): %v", err)
	}
}

func TestKeyID(t *testing.T) {
	pub, _ := testKey(1)
	other, _ := testKey(2)
	id := KeyID(pub)
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("KeyID = %q, want 16 lower-case hex digits", id)
	}
	if id == KeyID(other) {
		t.Fatal("different keys have the same id")
	}
	// Golden value: the id is part of the file format and must not change.
	if got := KeyID(make([]byte, 32)); got != "66687aadf862bd77" {
		t.Errorf("KeyID(zero key) = %s", got)
	}
}

func TestKeyRoundtrip(t *testing.T) {
	pub, priv := testKey(3)
	pubFile, privFile := EncodePublicKey(pub), EncodePrivateKey(priv)
	for _, data := range [][]byte{pubFile, privFile} {
		if !bytes.HasPrefix(data, []byte("# key-id: "+KeyID(pub)+"\n")) {
			t.Errorf("key file does not start with its key id:\n%s", data)
		}
	}
	if !bytes.Contains(pubFile, []byte("-----BEGIN TRIAD VENDOR PUBLIC KEY-----")) ||
		!bytes.Contains(privFile, []byte("-----BEGIN TRIAD VENDOR PRIVATE KEY-----")) {
		t.Errorf("wrong block types:\n%s\n%s", pubFile, privFile)
	}
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n  ")) }
	for name, data := range map[string][]byte{"plain": pubFile, "CRLF, indented": crlf(pubFile)} {
		got, err := ParsePublicKey(data)
		if err != nil || !got.Equal(pub) {
			t.Errorf("%s: ParsePublicKey = %v, %v", name, got, err)
		}
	}
	for name, data := range map[string][]byte{"plain": privFile, "CRLF, indented": crlf(privFile)} {
		got, err := ParsePrivateKey(data)
		if err != nil || !got.Equal(priv) {
			t.Errorf("%s: ParsePrivateKey = %v, %v", name, got, err)
		}
	}
	// A key read back signs licenses that the public key read back verifies.
	gotPriv, _ := ParsePrivateKey(privFile)
	gotPub, _ := ParsePublicKey(pubFile)
	if err := mustParse(t, mustSign(t, validBody(), gotPriv)).Verify([]ed25519.PublicKey{gotPub}); err != nil {
		t.Errorf("Verify with keys read from files: %v", err)
	}
}

func TestKeyStandardFormats(t *testing.T) {
	pub, priv := testKey(4)
	pkix, _ := x509.MarshalPKIXPublicKey(pub)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)
	if got, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})); err != nil || !got.Equal(pub) {
		t.Errorf("PKIX public key: %v, %v", got, err)
	}
	if got, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})); err != nil || !got.Equal(priv) {
		t.Errorf("PKCS#8 private key: %v, %v", got, err)
	}
	if got, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: PrivateKeyBlock, Bytes: priv.Seed()})); err != nil || !got.Equal(priv) {
		t.Errorf("seed-only private key: %v, %v", got, err)
	}
}

func TestKeyParseErrors(t *testing.T) {
	pub, priv := testKey(5)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), nil)
	ecPKIX, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	damaged := bytes.Clone(priv)
	damaged[40] ^= 1
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }

	tests := []struct {
		name    string
		private bool // parse as private key
		data    []byte
		want    string
	}{
		{"private key given as public", false, EncodePrivateKey(priv), "this is a vendor PRIVATE key, but a public key is expected"},
		{"openssl private key given as public", false, block("PRIVATE KEY", nil), "PRIVATE key, but a public key is expected"},
		{"public key given as private", true, EncodePublicKey(pub), "this is a vendor PUBLIC key, but the private key is needed"},
		{"no block", false, []byte("hello"), "no '-----BEGIN TRIAD VENDOR PUBLIC KEY-----' line found"},
		{"no block, private", true, nil, "no '-----BEGIN TRIAD VENDOR PRIVATE KEY-----' line found"},
		{"other block type", false, block("CERTIFICATE", []byte{1}), `holds a "CERTIFICATE" block`},
		{"short public key", false, block(PublicKeyBlock, pub[:31]), "vendor public key is 31 bytes, want 32"},
		{"short private key", true, block(PrivateKeyBlock, priv[:40]), "vendor private key is 40 bytes, want 64"},
		{"damaged private key", true, block(PrivateKeyBlock, damaged), "its public half does not match its seed"},
		{"ECDSA public key", false, block("PUBLIC KEY", ecPKIX), "but vendor keys are Ed25519"},
		{"bad PKIX", false, block("PUBLIC KEY", []byte{1, 2}), "PUBLIC KEY block:"},
		{"encrypted key", true, pem.EncodeToMemory(&pem.Block{Type: PrivateKeyBlock, Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: priv}), "encrypted key?"},
		{"too large", false, bytes.Repeat([]byte{' '}, MaxFileSize+1), "larger than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.private {
				_, err = ParsePrivateKey(tt.data)
			} else {
				_, err = ParsePublicKey(tt.data)
			}
			wantErr(t, err, ErrKeyFile, "vendor key file is invalid: ", tt.want)
		})
	}
}
