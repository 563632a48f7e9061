package license

import (
	"crypto/ed25519"
	"fmt"
	"strings"
)

// Verify checks the signature over BodyBytes against each trusted vendor key
// and returns nil if any verifies. The key-id in the file is only used in the
// message: it is not signed, so it cannot be used to pick the key.
func (f *File) Verify(trusted []ed25519.PublicKey) error {
	if len(trusted) == 0 {
		return &kindError{ErrNoTrustedKey, "no vendor public key is trusted: start the member with --trust VENDOR.pub"}
	}
	ids := make([]string, 0, len(trusted))
	for _, pub := range trusted {
		// ed25519.Verify panics on a key of the wrong length.
		if len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, f.BodyBytes, f.Signature) {
			return nil
		}
		ids = append(ids, KeyID(pub))
	}
	return &kindError{ErrSignature, fmt.Sprintf(
		"license signature does not verify against any trusted vendor key (license key id %s, trusted: %s): "+
			"if the key ids differ, trust the vendor key that issued it; if they match, the file was altered: ask the vendor for a new copy",
		f.KeyID, strings.Join(ids, ", "))}
}
