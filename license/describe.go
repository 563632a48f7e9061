package license

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Describe returns the body in plain words, one line per fact and without a
// leading "# ". Sign writes these lines as the file's comments; a CLI can
// print them to show a license. Text from the body is sanitised, so even a
// body that failed Validate cannot break the lines apart.
func Describe(b *Body) []string {
	lines := []string{
		"Serial:      " + clean(b.Serial),
		"Issued to:   " + clean(b.IssuedTo),
		"Issued at:   " + fmtTime(b.IssuedAt),
		"Valid:       from " + fmtTime(b.ValidAfter) + " until " + fmtTime(b.ValidUntil),
		"Binding:     " + describeBinding(&b.Binding),
	}
	if len(b.Supersedes) > 0 {
		lines = append(lines, "Supersedes:  "+cleanList(b.Supersedes))
	}
	for _, f := range b.Features {
		lines = append(lines, "Feature:     "+describeFeature(f))
	}
	if b.Description != "" {
		lines = append(lines, "Description: "+clean(b.Description))
	}
	return lines
}

func describeBinding(bd *Binding) string {
	switch bd.Mode {
	case ModeStandalone:
		return "standalone member, computer id " + cleanList(bd.ComputerIDs)
	case ModeFailover:
		return "failover cluster of three members, computer ids " + cleanList(bd.ComputerIDs)
	default:
		return fmt.Sprintf("mode %s, computer ids %s", clean(bd.Mode), cleanList(bd.ComputerIDs))
	}
}

func describeFeature(f Feature) string {
	model := f.Model
	if model == "" {
		model = ModelConcurrent
	}
	limit := f.Limit
	if limit == "" {
		limit = LimitHard
	}
	borrow := "no borrowing"
	if f.MaxBorrowSeconds > 0 {
		borrow = "borrow up to " + fmtDuration(f.MaxBorrow())
	}
	if model == ModelCountdown {
		model = fmt.Sprintf("%s of %d usage hours", model, f.UsageHours)
	}
	if limit == LimitSoft {
		limit = fmt.Sprintf("%s (overdraft %d)", limit, f.Overdraft)
	}
	extra := ""
	if len(f.Components) > 0 {
		extra += fmt.Sprintf(", package (suite) of %s", cleanList(f.Components))
	}
	if f.LingerSeconds > 0 {
		extra += ", linger " + fmtDuration(f.Linger())
	}
	if f.MinTimeoutSeconds > 0 {
		extra += ", idle timeout at least " + fmtDuration(f.MinTimeout())
	}
	return fmt.Sprintf("%s version %s: %d seats, %s, %s limit, grace %s, %s%s",
		clean(f.Name), clean(f.VersionString()), f.Count, clean(model), clean(limit), fmtDuration(f.Grace()), borrow, extra)
}

// fmtDuration prints whole hours or minutes when it can ("2h", not "2h0m0s").
func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func cleanList(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return strings.Join(out, ", ")
}

// clean replaces invalid UTF-8 and control characters, which could end a
// comment line early and start a forged field line.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
