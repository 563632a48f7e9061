package server

import (
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/peerpb"
)

// Every pair of members is compared: A at -59 min and C at +59 min are each
// within an hour of the contacted B, but 1 h 58 min apart.
func TestCheckClockPairs(t *testing.T) {
	members := []string{"a:1", "b:1", "c:1"}
	infos := []*peerpb.InfoResponse{{Name: "A"}, {Name: "B"}, {Name: "C"}}
	err := checkClockPairs(members, infos, []time.Duration{-59 * time.Minute, 0, 59 * time.Minute})
	if err == nil || !strings.Contains(err.Error(), "A") || !strings.Contains(err.Error(), "C") || !strings.Contains(err.Error(), "NTP") {
		t.Fatalf("members 1h58m apart: %v", err)
	}
	if err := checkClockPairs(members, infos, []time.Duration{-30 * time.Minute, 0, 29 * time.Minute}); err != nil {
		t.Fatalf("members 59 min apart: %v", err)
	}
	if err := checkClockPairs(members, infos, []time.Duration{0, 61 * time.Minute, 0}); err == nil {
		t.Fatal("a member 61 min off the contacted one passed")
	}
}
