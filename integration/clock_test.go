package integration

import (
	"strings"
	"testing"
)

// Formation compares every pair of clocks: bravo at -59 min and charlie at
// +59 min are each within the hour of alpha, the member contacted, but
// almost two hours apart from each other.
func TestClockFormationEveryPair(t *testing.T) {
	c := startCluster(t)
	for _, x := range []struct {
		m      *member
		offset string
	}{{c.members[1], "-59m"}, {c.members[2], "59m"}} {
		x.m.kill()
		x.m.extra = []string{"--test-clock-offset", x.offset}
		x.m.start()
	}
	_, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", c.servers())
	if err == nil || !strings.Contains(err.Error(), "clock of member") || !strings.Contains(err.Error(), "NTP") {
		t.Fatalf("formation with two members 1h58m apart: %v", err)
	}
	if !strings.Contains(err.Error(), "bravo") || !strings.Contains(err.Error(), "charlie") {
		t.Fatalf("the error does not name the pair: %v", err)
	}
}
