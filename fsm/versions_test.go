package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// v5v3 returns a harness with licenses cad {v5: 2 seats, v3: 2 seats}.
func v5v3(t *testing.T) *harness {
	h := formed(t)
	h.mustEnroll(t0, lic("L5", t0-day, t0+day, feat("cad", 5, 2)))
	h.mustEnroll(t0, lic("L3", t0-day, t0+10*day, feat("cad", 3, 2)))
	return h
}

func TestVersions(t *testing.T) {
	cases := []struct {
		name     string
		versions []uint32 // requested in order
		granted  string   // "y"/"n" per request
		lastMsg  string   // message of the last refusal, if any
	}{
		{"two v5 and two v3 fit", []uint32{5, 5, 3, 3}, "yyyy", ""},
		{"fifth seat at v5", []uint32{5, 5, 3, 3, 5}, "yyyyn", "no seat left for cad v 5 (2 of 2 in use)"},
		{"fifth seat at v3", []uint32{5, 5, 3, 3, 3}, "yyyyn", "no seat left for cad v 3 (4 of 4 in use)"},
		{"fifth seat at v0", []uint32{5, 5, 3, 3, 0}, "yyyyn", "no seat left for cad v 0 (4 of 4 in use)"},
		{"three v5", []uint32{5, 5, 5}, "yyn", "no seat left for cad v 5 (2 of 2 in use)"},
		{"v4 uses v5 seats", []uint32{4, 4, 5}, "yyn", "(2 of 2 in use)"},
		{"four v3 use every seat", []uint32{3, 3, 3, 3, 5}, "yyyyn", "no seat left for cad v 5 (4 of 4 in use)"},
		{"three v3 leave one v5", []uint32{3, 3, 3, 5, 5}, "yyyyn", "(4 of 4 in use)"},
		{"v1 and v3 share", []uint32{1, 3, 1, 5, 2}, "yyyyn", "(4 of 4 in use)"},
		{"v6 is too new", []uint32{6}, "n", "no license for cad at version 6 (highest licensed version is 5)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := v5v3(t)
			var msg string
			for i, v := range c.versions {
				r := h.op(t0, grantOp(fmt.Sprint("r", i), "cad", v, 1))
				if got := r.Code == fsmpb.Code_OK; got != (c.granted[i] == 'y') {
					t.Fatalf("request %d (v%d): %v %q, want granted=%c", i, v, r.Code, r.Message, c.granted[i])
				}
				if r.Code != fsmpb.Code_OK {
					msg = r.Message
				}
			}
			if !strings.Contains(msg, c.lastMsg) {
				t.Fatalf("last refusal %q, want %q", msg, c.lastMsg)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	h := v5v3(t)
	h.mustEnroll(t0, lic("S1", t0-day, t0+day, feat("sim", 0, 1), feat("cad", 3, 1)))
	h.mustEnroll(t0, lic("X", t0+hour, t0+day, feat("fut", 1, 1))) // not yet valid: no row
	check := func(now int64, want ...Usage) {
		t.Helper()
		if got := h.f.Usage(now); !slices.Equal(got, want) {
			t.Fatalf("Usage:\n got %v\nwant %v", got, want)
		}
	}
	check(t0,
		Usage{"cad", 3, 3, 0, ""}, Usage{"cad", 5, 2, 0, ""}, Usage{"sim", 0, 1, 0, ""})
	h.mustGrant(t0, "a", "cad", 5, 1)
	h.mustGrant(t0, "b", "cad", 0, 4)
	check(t0,
		Usage{"cad", 3, 3, 3, ""}, Usage{"cad", 5, 2, 2, ""}, Usage{"sim", 0, 1, 0, ""})
	check(t0+hour,
		Usage{"cad", 3, 3, 3, ""}, Usage{"cad", 5, 2, 2, ""}, Usage{"fut", 1, 1, 0, ""}, Usage{"sim", 0, 1, 0, ""})
	// L5 and S1 expire: 5 seats in use, 2 left. The v0 leases that do not
	// fit show in the highest row, which serves them; the v5 lease does not
	// fit a v3 seat at all and shows in a zero-capacity row at its version.
	check(t0+2*day, Usage{"cad", 3, 2, 4, ""}, Usage{"cad", 5, 0, 1, ""})
	// L3 too: no valid license; the demand shows at its own versions.
	check(t0+11*day, Usage{"cad", 0, 0, 4, ""}, Usage{"cad", 5, 0, 1, ""})

	h.op(t0, releaseOp(1, 2))
	h.mustGrant(t0, "c", "cad", 4, 1)
	h.mustGrant(t0, "d", "cad", 0, 2)
	// Demand v4 goes to v5; v0 goes to the lowest rows.
	check(t0, Usage{"cad", 3, 3, 2, ""}, Usage{"cad", 5, 2, 1, ""}, Usage{"sim", 0, 1, 0, ""})
}

func TestSeatCheckDoesNotScanLeases(t *testing.T) {
	// Many leases, few versions: the derived counts stay per version.
	h := formed(t)
	h.mustEnroll(t0, lic("L1", t0-day, t0+day, feat("cad", 5, 5000), feat("cad", 2, 5000)))
	for i := range 2000 {
		h.mustGrant(t0, fmt.Sprint("r", i), "cad", uint32(i%6), 1)
	}
	if u := h.f.s.inUse["cad"]; len(u.byVersion) != 6 {
		t.Fatalf("in-use index has %d versions, want 6", len(u.byVersion))
	}
	var total uint64
	for _, vc := range h.f.s.inUse["cad"].byVersion {
		total += vc.count
	}
	if total != 2000 {
		t.Fatalf("in use %d", total)
	}
}
