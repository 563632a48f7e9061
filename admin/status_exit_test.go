package admin

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// exitCode is the exit status triadctl would end with after err.
func exitCode(err error) int {
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.ExitCode()
	default:
		return 1 // cmd/triadctl's main
	}
}

// TestClusterStatusExitCodes: `cluster status` exits like a monitoring
// plugin, 0/1/2 by status word, in table and JSON output, and 3 when no
// member answers; it prints alarms and recent events.
func TestClusterStatusExitCodes(t *testing.T) {
	for _, tc := range []struct {
		word string
		want int
	}{
		{"operational", 0},
		{"partially operational", 1},
		{"not operational", 2},
	} {
		b := &fakeBackend{status: &triadv1.ClusterStatusResponse{Status: tc.word, Member: "m1",
			Alarms: []*triadv1.Alarm{{Kind: "member_down", Member: "m3", Message: "member m3 is down", SinceUnixMs: 1700000000000}},
			Events: []*triadv1.Event{{Kind: "link_down", Member: "m3", Message: "link m1 – m3 is down", AtUnixMs: 1700000000000}},
			Links:  []*triadv1.Link{{A: "m1", B: "m3", State: "down", DownSinceUnixMs: 1700000000000}, {A: "m1", B: "m2", State: "up"}}}}
		addr := startAdminServer(t, b)
		for _, output := range []string{"table", "json"} {
			out, errOut, err := runCLI(t, "--server", addr, "--output", output, "cluster", "status")
			if got := exitCode(err); got != tc.want {
				t.Errorf("%s (%s): exit %d (%v), want %d", tc.word, output, got, err, tc.want)
			}
			if errOut != "" || (err != nil && err.Error() != "") {
				t.Errorf("%s (%s): printed %q / error %q besides the status", tc.word, output, errOut, err)
			}
			if !strings.Contains(out, tc.word) || !strings.Contains(out, "member_down") {
				t.Errorf("%s (%s): output lacks the word or the alarm:\n%s", tc.word, output, out)
			}
			if output == "table" && (!strings.Contains(out, "RECENT EVENTS") || !strings.Contains(out, "link m1 – m3 is down") ||
				!strings.Contains(out, "down since "+fmtMs(1700000000000))) {
				t.Errorf("%s: table lacks the recent events:\n%s", tc.word, out)
			}
		}
		// `cluster links` shows links only and keeps exit 0.
		if _, _, err := runCLI(t, "--server", addr, "cluster", "links"); err != nil {
			t.Errorf("%s: cluster links: %v", tc.word, err)
		}
	}
	_, _, err := runCLI(t, "--server", "127.0.0.1:1", "--timeout", "2s", "cluster", "status")
	if got := exitCode(err); got != ExitUnknown || !strings.Contains(err.Error(), "unknown") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("no member answering: exit %d, error %v; want %d naming the address", got, err, ExitUnknown)
	}
}

// TestClusterStatusBestView: when the first member answering is not
// operational, the others of --server are asked and the best view wins;
// an operational first answer asks no one else.
func TestClusterStatusBestView(t *testing.T) {
	cut := &fakeBackend{status: &triadv1.ClusterStatusResponse{Status: "not operational", Member: "m3", Isolated: true}}
	majority := &fakeBackend{status: &triadv1.ClusterStatusResponse{Status: "partially operational", Member: "m1"}}
	worse := &fakeBackend{status: &triadv1.ClusterStatusResponse{Status: "not operational", Member: "m2"}}
	c3, c1, c2 := startAdminServer(t, cut), startAdminServer(t, majority), startAdminServer(t, worse)

	out, _, err := runCLI(t, "--server", "127.0.0.1:1,"+c3+","+c1+","+c2, "--output", "json", "cluster", "status")
	if got := exitCode(err); got != 1 || !strings.Contains(out, `"member": "m1"`) {
		t.Errorf("cut-off member first: exit %d, output\n%s\nwant exit 1 with m1's view", got, out)
	}
	// Only one member given: its view, whatever it is.
	out, _, err = runCLI(t, "--server", c3, "--output", "json", "cluster", "status")
	if got := exitCode(err); got != 2 || !strings.Contains(out, `"member": "m3"`) {
		t.Errorf("single cut-off member: exit %d, output\n%s", got, out)
	}

	ok := &fakeBackend{}
	other := &fakeBackend{}
	a1, a2 := startAdminServer(t, ok), startAdminServer(t, other)
	if _, _, err := runCLI(t, "--server", a1+","+a2, "cluster", "status"); exitCode(err) != 0 {
		t.Fatalf("operational: %v", err)
	}
	for _, call := range other.callList() {
		if call == "ClusterStatus" {
			t.Errorf("an operational first answer still asked the next member")
		}
	}
}
