package membership

import "testing"

func TestStatus(t *testing.T) {
	link := func(a, b, state string) Link { return Link{A: a, B: b, State: state} }
	tests := []struct {
		name  string
		links []Link
		want  string
	}{
		{"standalone (no links)", nil, StatusOperational},
		{"all three up", []Link{link("a", "b", LinkUp), link("a", "c", LinkUp), link("b", "c", LinkUp)}, StatusOperational},
		{"two up", []Link{link("a", "b", LinkUp), link("a", "c", LinkDown), link("b", "c", LinkUp)}, StatusOperational},
		{"two up, one unknown", []Link{link("a", "b", LinkUp), link("a", "c", LinkUp), link("b", "c", LinkUnknown)}, StatusOperational},
		{"one up", []Link{link("a", "b", LinkUp), link("a", "c", LinkDown), link("b", "c", LinkDown)}, StatusPartiallyOperational},
		{"one up, others unknown", []Link{link("a", "b", LinkUnknown), link("a", "c", LinkUp), link("b", "c", LinkUnknown)}, StatusPartiallyOperational},
		{"none up", []Link{link("a", "b", LinkDown), link("a", "c", LinkDown), link("b", "c", LinkDown)}, StatusNotOperational},
		{"none up, all unknown", []Link{link("a", "b", LinkUnknown), link("a", "c", LinkUnknown), link("b", "c", LinkUnknown)}, StatusNotOperational},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Status(tc.links); got != tc.want {
				t.Errorf("Status(%v) = %q, want %q", tc.links, got, tc.want)
			}
		})
	}
}
