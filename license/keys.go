package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
)

// Block types of the vendor key files.
const (
	PublicKeyBlock  = "TRIAD VENDOR PUBLIC KEY"
	PrivateKeyBlock = "TRIAD VENDOR PRIVATE KEY"
)

const keyIDBytes = 8

// KeyID names a vendor public key: hex of the first 8 bytes of its SHA-256.
// It appears in license files, key files and messages so people can tell
// keys apart; it is never used to decide trust.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:keyIDBytes])
}

// GenerateKey makes a vendor key pair from rand (crypto/rand.Reader when nil).
// The result is deterministic in rand, which tests rely on.
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand)
}

// EncodePublicKey writes a public key file: a "# key-id:" comment line and a
// PEM block holding the 32 raw key bytes.
func EncodePublicKey(pub ed25519.PublicKey) []byte {
	return encodeKey(PublicKeyBlock, KeyID(pub), pub)
}

// EncodePrivateKey writes a private key file: a comment with the key id of
// its public half and a PEM block holding the 64 raw key bytes (seed then
// public key, as crypto/ed25519 holds them).
func EncodePrivateKey(priv ed25519.PrivateKey) []byte {
	pub := priv.Public().(ed25519.PublicKey)
	return encodeKey(PrivateKeyBlock, KeyID(pub), priv)
}

func encodeKey(typ, id string, raw []byte) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# key-id: %s\n", id)
	_ = pem.Encode(&buf, &pem.Block{Type: typ, Bytes: raw}) // writes to a bytes.Buffer cannot fail
	return buf.Bytes()
}

// ParsePublicKey reads a vendor public key file. It also accepts a standard
// "PUBLIC KEY" (PKIX) block holding an Ed25519 key, as openssl writes.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, err := decodeKeyBlock(data, PublicKeyBlock)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case PublicKeyBlock:
		if len(block.Bytes) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: vendor public key is %d bytes, want %d; ask the vendor for a new copy of it",
				ErrKeyFile, len(block.Bytes), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(bytes.Clone(block.Bytes)), nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PUBLIC KEY block: %v", ErrKeyFile, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: PUBLIC KEY block holds a %T, but vendor keys are Ed25519", ErrKeyFile, k)
		}
		return pub, nil
	case PrivateKeyBlock, "PRIVATE KEY":
		return nil, fmt.Errorf("%w: this is a vendor PRIVATE key, but a public key is expected here: "+
			"give the .pub file, and keep the private key on the vendor's signing machine only", ErrKeyFile)
	default:
		return nil, fmt.Errorf("%w: key file holds a %q block, but a %q block is expected", ErrKeyFile, block.Type, PublicKeyBlock)
	}
}

// ParsePrivateKey reads a vendor private key file. It also accepts a 32-byte
// seed in place of the 64-byte key, and a standard "PRIVATE KEY" (PKCS#8)
// block holding an Ed25519 key, as openssl writes.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, err := decodeKeyBlock(data, PrivateKeyBlock)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case PrivateKeyBlock:
		switch len(block.Bytes) {
		case ed25519.SeedSize:
			return ed25519.NewKeyFromSeed(block.Bytes), nil
		case ed25519.PrivateKeySize:
			priv := ed25519.NewKeyFromSeed(block.Bytes[:ed25519.SeedSize])
			// The second half is the public key; if it does not match the
			// seed, signatures would carry the wrong key and never verify.
			if !bytes.Equal(priv, block.Bytes) {
				return nil, fmt.Errorf("%w: vendor private key is damaged (its public half does not match its seed)", ErrKeyFile)
			}
			return priv, nil
		default:
			return nil, fmt.Errorf("%w: vendor private key is %d bytes, want %d", ErrKeyFile, len(block.Bytes), ed25519.PrivateKeySize)
		}
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PRIVATE KEY block: %v", ErrKeyFile, err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PRIVATE KEY block holds a %T, but vendor keys are Ed25519", ErrKeyFile, k)
		}
		return priv, nil
	case PublicKeyBlock, "PUBLIC KEY":
		return nil, fmt.Errorf("%w: this is a vendor PUBLIC key, but the private key is needed to sign: "+
			"give the file written next to it by 'triadctl vendor keygen'", ErrKeyFile)
	default:
		return nil, fmt.Errorf("%w: key file holds a %q block, but a %q block is expected", ErrKeyFile, block.Type, PrivateKeyBlock)
	}
}

// decodeKeyBlock finds the PEM block after trimming every line, so key files
// pasted from mail (CRLF, indentation) still read.
func decodeKeyBlock(data []byte, want string) (*pem.Block, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: file is larger than 1 MiB; check that it is a %s file", ErrKeyFile, strings.ToLower(want))
	}
	lines := strings.Split(string(data), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	block, _ := pem.Decode([]byte(strings.Join(lines, "\n")))
	if block == nil {
		return nil, fmt.Errorf("%w: no '-----BEGIN %s-----' line found; give the key file written by 'triadctl vendor keygen'", ErrKeyFile, want)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: key block has headers (an encrypted key?); Triad reads only unencrypted Ed25519 keys", ErrKeyFile)
	}
	return block, nil
}
