package license

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxFileSize bounds what Parse reads. Real license files are a few KiB; the
// bound keeps a wrong file (a log, an ISO) from being decoded at all.
const MaxFileSize = 1 << 20

// File is a parsed license file. Body is decoded from BodyBytes, and Parse
// guarantees that BodyBytes is exactly the canonical encoding of Body, so once
// Verify has accepted BodyBytes, Body can be trusted. A File built by hand
// carries no such guarantee: use Parse.
type File struct {
	Body      Body
	BodyBytes []byte // the exact bytes the signature covers
	KeyID     string // the signer's key id as written in the file; a hint only, not signed
	Signature []byte
}

const adviceNewCopy = "ask the vendor for a new copy of the file"

func corrupt(detail, advice string) error {
	return fmt.Errorf("%w: %s; %s", ErrCorrupt, detail, advice)
}

// Parse reads a license file. It checks the form of the file and the body
// (including Validate) but not the signature, the dates or the binding: call
// Verify, CheckDates and CheckBinding for those. Every error wraps ErrCorrupt.
//
// Parse tolerates what mail clients and editors do to text: CRLF line ends,
// a byte-order mark, blank lines, surrounding spaces, upper-case field
// names, and base64 values wrapped onto continuation lines.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, corrupt(fmt.Sprintf("file is %d bytes, larger than the 1 MiB a license file can be", len(data)),
			"check that this is a Triad license file")
	}
	fields, err := splitFields(data)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"body", "key-id", "signature"} {
		if _, ok := fields[name]; !ok {
			return nil, corrupt(fmt.Sprintf("missing '%s:' line", name), adviceNewCopy)
		}
	}

	var f File
	f.BodyBytes, err = base64.StdEncoding.DecodeString(fields["body"])
	if err != nil {
		return nil, corrupt(fmt.Sprintf("body is not valid base64: %v", err), adviceNewCopy)
	}
	f.Signature, err = base64.StdEncoding.DecodeString(fields["signature"])
	if err != nil {
		return nil, corrupt(fmt.Sprintf("signature is not valid base64: %v", err), adviceNewCopy)
	}
	if len(f.Signature) != 64 {
		return nil, corrupt(fmt.Sprintf("signature is %d bytes, want 64", len(f.Signature)), adviceNewCopy)
	}
	f.KeyID = strings.ToLower(fields["key-id"])
	if id, err := hex.DecodeString(f.KeyID); err != nil || len(id) != keyIDBytes {
		return nil, corrupt(fmt.Sprintf("key-id %q is not %d hex digits", fields["key-id"], 2*keyIDBytes), adviceNewCopy)
	}
	if err := decodeBody(f.BodyBytes, &f.Body); err != nil {
		return nil, err
	}
	return &f, nil
}

// splitFields returns the "name: value" lines of a license file, keyed by
// lower-case name, with continuation lines joined to the field above.
func splitFields(data []byte) (map[string]string, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte-order mark from Windows editors
	fields := make(map[string]string, 3)
	last := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw) // also drops the '\r' of CRLF
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			// base64 and hex never contain ':', so a line without one is the
			// rest of a value that a mail client wrapped.
			if last == "" {
				return nil, corrupt(fmt.Sprintf("line %d is neither a comment nor a 'name: value' line", i+1), adviceNewCopy)
			}
			fields[last] += line
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "body", "key-id", "signature":
		default:
			return nil, corrupt(fmt.Sprintf("line %d has unknown field %q (expected body, key-id and signature)", i+1, truncate(name, 40)), adviceNewCopy)
		}
		if _, dup := fields[name]; dup {
			return nil, corrupt(fmt.Sprintf("the '%s:' line appears twice (line %d)", name, i+1), adviceNewCopy)
		}
		fields[name] = strings.TrimSpace(value)
		last = name
	}
	return fields, nil
}

// decodeBody decodes and checks the signed JSON body. It is strict: unknown
// fields are refused (a newer vendor tool may have added a restriction this
// member would silently ignore), and the bytes must be canonical, so one
// license has exactly one body encoding.
func decodeBody(data []byte, b *Body) error {
	var probe struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return corrupt(fmt.Sprintf("body is not valid JSON: %v", err), adviceNewCopy)
	}
	if probe.FormatVersion == nil {
		return corrupt("body has no format_version", adviceNewCopy)
	}
	if v := *probe.FormatVersion; v != FormatVersion {
		return corrupt(fmt.Sprintf("body has format_version %d, but this version of Triad reads only format_version %d", v, FormatVersion),
			"upgrade Triad on every member, or ask the vendor for a license in format_version 1")
	}
	// Data after the object is caught by Unmarshal above (and trailing
	// space by the canonical check below).
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(b); err != nil {
		return corrupt(fmt.Sprintf("body is not valid JSON: %v", err), adviceNewCopy)
	}
	if err := b.Validate(); err != nil {
		return corrupt(fmt.Sprintf("body is not a valid license: %v", err), adviceNewCopy)
	}
	canon, err := canonicalJSON(*b)
	if err != nil || !bytes.Equal(canon, data) {
		return corrupt("body is not in the canonical form that 'triadctl vendor issue' writes (it was edited or made by another tool)", adviceNewCopy)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
