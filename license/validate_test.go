package license

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(b *Body)
		want string // "" means valid
	}{
		{"valid", func(b *Body) {}, ""},
		{"standalone with one id", func(b *Body) { b.Binding = Binding{ModeStandalone, []string{"x"}} }, ""},
		{"feature name with all allowed characters", func(b *Body) { b.Features[0].Name = "aZ09_.-" }, ""},
		{"same name, other version", func(b *Body) { b.Features[1].Name = "cad" }, ""},
		{"no description", func(b *Body) { b.Description = "" }, ""},
		{"wrong format_version", func(b *Body) { b.FormatVersion = 3 }, "format_version is 3"},
		{"empty serial", func(b *Body) { b.Serial = "" }, "serial is empty"},
		{"blank issued_to", func(b *Body) { b.IssuedTo = "  " }, "issued_to is empty"},
		{"newline in issued_to", func(b *Body) { b.IssuedTo = "a\nb" }, "issued_to \"a\\nb\" contains a control character"},
		{"bad UTF-8 in serial", func(b *Body) { b.Serial = "\xff" }, "serial is not valid UTF-8"},
		{"long serial", func(b *Body) { b.Serial = strings.Repeat("s", 129) }, "serial is 129 bytes long"},
		{"no issued_at", func(b *Body) { b.IssuedAt = time.Time{} }, "issued_at is not set"},
		{"no valid_after", func(b *Body) { b.ValidAfter = time.Time{} }, "valid_after is not set"},
		{"no valid_until", func(b *Body) { b.ValidUntil = time.Time{} }, "valid_until is not set"},
		{"until equals after", func(b *Body) { b.ValidUntil = b.ValidAfter }, "valid_until (2026-01-01 00:00:00 UTC) is not after valid_after"},
		{"until before after", func(b *Body) { b.ValidUntil = b.ValidAfter.Add(-time.Hour) }, "is not after valid_after"},
		{"supersedes itself", func(b *Body) { b.Supersedes = []string{b.Serial} }, "cannot supersede itself"},
		{"empty supersedes entry", func(b *Body) { b.Supersedes = []string{""} }, "supersedes[0] is empty"},
		{"unknown mode", func(b *Body) { b.Binding.Mode = "cluster" }, `binding.mode is "cluster"`},
		{"standalone with three ids", func(b *Body) { b.Binding.Mode = ModeStandalone }, "has 3 ids but a standalone license needs exactly 1"},
		{"failover with two ids", func(b *Body) { b.Binding.ComputerIDs = []string{"a", "b"} }, "has 2 ids but a failover license needs exactly 3"},
		{"failover with repeated id", func(b *Body) { b.Binding.ComputerIDs = []string{"a", "b", "a"} }, `lists "a" twice`},
		{"failover with empty id", func(b *Body) { b.Binding.ComputerIDs = []string{"a", "", "c"} }, "binding.computer_ids[1] is empty"},
		{"no features", func(b *Body) { b.Features = nil }, "features is empty"},
		{"empty feature name", func(b *Body) { b.Features[0].Name = "" }, "features[0]: feature name \"\" must be 1 to 64"},
		{"long feature name", func(b *Body) { b.Features[0].Name = strings.Repeat("f", 65) }, "must be 1 to 64 characters"},
		{"space in feature name", func(b *Body) { b.Features[1].Name = "cad render" }, "features[1]: feature name \"cad render\" may contain only"},
		{"zero count", func(b *Body) { b.Features[1].Count = 0 }, "features[1] (cad.render version 2): count is 0"},
		{"unknown model", func(b *Body) { b.Features[0].Model = "floating" }, `model is "floating"`},
		{"unknown limit", func(b *Body) { b.Features[0].Limit = "strict" }, `limit is "strict"`},
		{"countdown with hours", func(b *Body) { b.Features[0].Model, b.Features[0].UsageHours = ModelCountdown, 500 }, ""},
		{"countdown without hours", func(b *Body) { b.Features[0].Model = ModelCountdown }, `a "countdown" feature needs usage_hours`},
		{"hours on a concurrent feature", func(b *Body) { b.Features[0].UsageHours = 5 }, `usage_hours is only for the "countdown" model`},
		{"soft without overdraft", func(b *Body) { b.Features[1].Overdraft = 0 }, "a soft limit needs an overdraft of at least 1 seat"},
		{"overdraft on a hard limit", func(b *Body) { b.Features[0].Overdraft = 3 }, `overdraft 3 needs limit "soft"`},
		{"duplicate feature", func(b *Body) { b.Features[1].Name, b.Features[1].Version = "cad", 5 }, "same name and version as features[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := validBody().normalized()
			tt.edit(&b)
			err := b.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
