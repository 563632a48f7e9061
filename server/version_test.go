package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
)

// A checkout's version pair is checked and put in its one form before it
// is proposed.
func TestNormalizeVersion(t *testing.T) {
	for _, c := range []struct {
		version uint32
		text    string
		wantV   uint32
		wantT   string
	}{
		{5, "", 5, ""},
		{0, "2.1", 2, "2.1"},
		{2, "2.1", 2, "2.1"},
		{0, "7", 7, ""},
		{0, "2024.06", 2024, "2024.06"},
	} {
		req := &triadv1.CheckoutRequest{Version: c.version, VersionText: c.text}
		if err := normalizeVersion(req); err != nil || req.Version != c.wantV || req.VersionText != c.wantT {
			t.Errorf("(%d, %q) → (%d, %q), %v; want (%d, %q)", c.version, c.text, req.Version, req.VersionText, err, c.wantV, c.wantT)
		}
	}
	for _, c := range []struct {
		version uint32
		text    string
		want    string
	}{
		{3, "2.1", `version_text "2.1" does not start with version 3`},
		{0, "2.x", `version_text: version "2.x": the minor component "x" is not a whole number`},
		{0, "1.2.3.4", "at most three"},
	} {
		err := normalizeVersion(&triadv1.CheckoutRequest{Version: c.version, VersionText: c.text})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("(%d, %q): %v, want InvalidArgument %q", c.version, c.text, err, c.want)
		}
	}
}
