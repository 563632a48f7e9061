package license

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	pub, priv := testKey(1)
	trusted := []ed25519.PublicKey{pub}
	good := mustSign(f, validBody(), priv)
	f.Add(good)
	f.Add(bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("body: e30=\nkey-id: 0011223344556677\nsignature: AAAA\n")) // "{}"
	f.Add(signedRaw([]byte(`{"format_version":2}`)))
	f.Add(signedRaw([]byte(`{"format_version":1,"serial":"x"}`)))
	f.Add([]byte("hello\nbody\n:::\n#"))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			if file != nil {
				t.Fatal("Parse returned a File with an error")
			}
			return
		}
		// Parse accepted it, so the body is valid and canonical: encoding the
		// decoded Body again gives the signed bytes, and a file written from it
		// with the same signature verifies exactly when the original did.
		canon, err := canonicalJSON(file.Body)
		if err != nil {
			t.Fatalf("re-encoding a parsed body: %v", err)
		}
		if !bytes.Equal(canon, file.BodyBytes) {
			t.Fatalf("parsed body is not canonical:\n%s\n%s", file.BodyBytes, canon)
		}
		if err := file.Body.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid body: %v", err)
		}
		again, err := Parse(encodeFile(&file.Body, canon, file.KeyID, file.Signature))
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if (file.Verify(trusted) == nil) != (again.Verify(trusted) == nil) {
			t.Fatalf("Verify differs after re-encoding: %v vs %v", file.Verify(trusted), again.Verify(trusted))
		}
		for _, l := range Describe(&file.Body) {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("Describe line %q contains a line break", l)
			}
		}
	})
}

// FuzzVerify: only the exact body and signature the vendor made verify.
func FuzzVerify(f *testing.F) {
	pub, priv := testKey(1)
	orig := mustParse(f, mustSign(f, validBody(), priv))
	f.Add(orig.BodyBytes, orig.Signature)
	f.Add(orig.BodyBytes[1:], orig.Signature)
	f.Add(orig.BodyBytes, orig.Signature[:63])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		file := &File{BodyBytes: body, Signature: sig}
		err := file.Verify([]ed25519.PublicKey{pub})
		same := bytes.Equal(body, orig.BodyBytes) && bytes.Equal(sig, orig.Signature)
		if (err == nil) != same {
			t.Fatalf("Verify = %v for same=%v", err, same)
		}
	})
}
