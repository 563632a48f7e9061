// Package featver reads and orders feature versions: whole numbers ("5")
// and dotted versions ("2.1", "2024.06", "5.3.1").
//
// A version has one to three components of decimal digits. Versions compare
// component by component, numerically, missing components counting as 0:
// 2.10 > 2.9, 2 == 2.0 == 2.0.0, 2024.06 == 2024.6. The first component may
// be 0 to 4294967295 (the range whole-number versions always had); the
// second and third 0 to 65535.
//
// Everywhere a version travels (license bodies, Raft commands, the gRPC
// API) it is a pair: the uint32 version field, which holds a whole-number
// version or the first component of a dotted one, and a text field, empty
// for a whole number and the dotted version exactly as licensed otherwise.
// Builds before dotted versions read only the uint32 field, so whole
// numbers keep their old encoding. Key maps a pair to an order-preserving
// number; Display gives the text users see.
package featver

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits of the components after the first.
const (
	MaxMinor = 1<<16 - 1
	MaxPatch = 1<<16 - 1
	// MaxTextLen bounds the text form: three components of at most ten
	// digits and two dots.
	MaxTextLen = 32
)

// Key is an order-preserving number for a version: major<<32 | minor<<16 |
// patch. Equal versions ("2", "2.0") have equal keys.
type Key uint64

// Whole is the key of a whole-number version.
func Whole(v uint32) Key { return Key(uint64(v) << 32) }

// Major is the first component.
func (k Key) Major() uint32 { return uint32(k >> 32) }

// String is the shortest text of k: "2", "2.1", "5.3.1" (it drops the
// licensed text's leading zeros and trailing ".0"; use Display to show a
// version as licensed).
func (k Key) String() string {
	major, minor, patch := uint64(k)>>32, uint64(k)>>16&0xffff, uint64(k)&0xffff
	switch {
	case patch != 0:
		return fmt.Sprintf("%d.%d.%d", major, minor, patch)
	case minor != 0:
		return fmt.Sprintf("%d.%d", major, minor)
	}
	return strconv.FormatUint(major, 10)
}

// Parse reads a version text: "5", "2.1", "2024.06", "5.3.1". The error
// says what is wrong and what a valid version looks like.
func Parse(s string) (Key, error) {
	if s == "" {
		return 0, fmt.Errorf("version is empty: give a version such as 5, 2.1 or 5.3.1")
	}
	if len(s) > MaxTextLen {
		return 0, fmt.Errorf("version %.40q is longer than %d characters: give a version such as 5, 2.1 or 5.3.1", s, MaxTextLen)
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return 0, fmt.Errorf("version %q has %d components; a version has at most three (major.minor.patch, such as 5.3.1)", s, len(parts))
	}
	limits := []uint64{1<<32 - 1, MaxMinor, MaxPatch}
	names := []string{"major", "minor", "patch"}
	var k uint64
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return 0, fmt.Errorf("version %q: the %s component %q is not a whole number: give digits separated by dots, such as 5, 2.1 or 5.3.1", s, names[i], p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n > limits[i] {
			return 0, fmt.Errorf("version %q: the %s component %s is larger than %d, the most Triad supports", s, names[i], p, limits[i])
		}
		k |= n << (32 - 16*i)
	}
	return Key(k), nil
}

// Split turns a version text into its wire pair: a whole number gives (n,
// ""), a dotted version its first component and the text as given.
func Split(s string) (version uint32, text string, err error) {
	k, err := Parse(s)
	if err != nil {
		return 0, "", err
	}
	if !strings.Contains(s, ".") {
		return k.Major(), "", nil
	}
	return k.Major(), s, nil
}

// Of is the key of a wire pair. It refuses a text that does not parse, has
// no dot (a whole number belongs in the uint32 field), or whose first
// component is not version.
func Of(version uint32, text string) (Key, error) {
	if text == "" {
		return Whole(version), nil
	}
	k, err := Parse(text)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(text, ".") {
		return 0, fmt.Errorf("version text %q is a whole number: give it in the version field and leave the text empty", text)
	}
	if k.Major() != version {
		return 0, fmt.Errorf("version text %q does not start with the version field's %d: the version field holds the first component of a dotted version", text, version)
	}
	return k, nil
}

// Display is the version users see for a wire pair: the dotted text as
// licensed or requested, or the whole number.
func Display(version uint32, text string) string {
	if text != "" {
		return text
	}
	return strconv.FormatUint(uint64(version), 10)
}
