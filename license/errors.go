package license

import "errors"

// Sentinel errors. The messages returned by this package wrap exactly one of
// them, so callers can pick a gRPC status or an exit code with errors.Is and
// still show the full, specific message to a person.
var (
	// ErrCorrupt: the bytes are not a well-formed license file.
	ErrCorrupt = errors.New("license file is corrupt")
	// ErrSignature: the file is well formed but no trusted key signed it.
	ErrSignature = errors.New("license signature does not verify")
	// ErrNoTrustedKey: the member trusts no vendor key, so nothing can verify.
	ErrNoTrustedKey = errors.New("no vendor public key is trusted")
	// ErrBinding: the license is for a different cluster mode or computers.
	ErrBinding = errors.New("license is bound to other computers")
	// ErrExpired: now is after valid_until.
	ErrExpired = errors.New("license expired")
	// ErrNotYetValid: now is before valid_after.
	ErrNotYetValid = errors.New("license is not valid yet")
	// ErrKeyFile: the bytes are not a vendor key file of the expected kind.
	ErrKeyFile = errors.New("vendor key file is invalid")
)

// kindError carries a full message of its own while still matching its
// sentinel with errors.Is; wrapping with "%w: ..." would repeat the
// sentinel's words in front of a message that already says the same thing.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
