package license

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// CheckBinding reports whether the license may be enrolled on a cluster
// running in mode with these computer ids. The ids are compared as sets
// (order does not matter) and exactly (case and spelling matter).
func CheckBinding(b *Body, mode string, computerIDs []string) error {
	if b.Binding.Mode != mode {
		return &kindError{ErrBinding, fmt.Sprintf(
			"license %s is for a %s cluster, but this cluster runs %s: ask the vendor for a %s license",
			b.Serial, b.Binding.Mode, mode, mode)}
	}
	want := slices.Sorted(slices.Values(b.Binding.ComputerIDs))
	have := slices.Sorted(slices.Values(computerIDs))
	if !slices.Equal(want, have) {
		return &kindError{ErrBinding, fmt.Sprintf(
			"license %s is bound to computer ids [%s], but this cluster's computer ids are [%s]: "+
				"send the vendor this cluster's computer ids and ask for a license bound to them",
			b.Serial, strings.Join(want, ", "), strings.Join(have, ", "))}
	}
	return nil
}

// CheckDates reports whether the license is valid at now. Validity includes
// both ends, at whole-second precision: body times are whole seconds, so a
// license valid until 23:59:59 is still valid at 23:59:59.999.
func CheckDates(b *Body, now time.Time) error {
	now = now.Truncate(time.Second)
	if now.Before(b.ValidAfter) {
		return &kindError{ErrNotYetValid, fmt.Sprintf(
			"license %s is not valid before %s: enroll it again from then, or check this member's clock",
			b.Serial, fmtTime(b.ValidAfter))}
	}
	if now.After(b.ValidUntil) {
		return &kindError{ErrExpired, fmt.Sprintf(
			"license %s expired on %s: ask the vendor for a renewal",
			b.Serial, fmtTime(b.ValidUntil))}
	}
	return nil
}

// fmtTime is the one way times appear in messages and comment lines.
func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
