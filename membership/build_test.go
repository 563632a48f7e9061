package membership

import (
	"context"
	"fmt"
	"testing"

	"github.com/triadlm/triad/proto/peerpb"
)

// TestMonitorExchangesBuilds: each heartbeat carries the sender's build
// (version, command format, halt reason) both ways: A learns B's from the
// reply, B learns A's from the ping; a change shows at the next ping; a
// peer never heard is reported as such.
func TestMonitorExchangesBuilds(t *testing.T) {
	var b *Monitor
	a := NewMonitor("A", testInterval, testFailAfter, func(ctx context.Context, addr string, req *peerpb.PingRequest) (*peerpb.PingResponse, error) {
		return b.HandlePing(req), nil
	}, nil)
	b = NewMonitor("B", testInterval, testFailAfter, nil, nil)
	a.SetPeers([]Peer{{Name: "B", Addr: "b"}})
	b.SetPeers([]Peer{{Name: "A", Addr: "a"}})
	aBuild := Build{Version: "1.1", Format: 2}
	a.SetBuild(func() Build { return aBuild })
	b.SetBuild(func() Build { return Build{Version: "1.0", Format: 1, Halted: "stopped at entry 9"} })
	if _, heard := a.PeerBuild("B"); heard {
		t.Fatal("a build reported before any heartbeat")
	}
	startMonitor(t, a)
	eventually(t, "builds exchanged", func() (bool, string) {
		gotB, okB := a.PeerBuild("B")
		gotA, okA := b.PeerBuild("A")
		return okA && okB && gotB == (Build{"1.0", 1, "stopped at entry 9"}) && gotA == aBuild,
			fmt.Sprintf("A sees B %+v %v; B sees A %+v %v", gotB, okB, gotA, okA)
	})
	a.SetBuild(func() Build { return Build{Version: "1.2", Format: 3} })
	eventually(t, "B sees A's upgrade", func() (bool, string) {
		got, _ := b.PeerBuild("A")
		return got == (Build{Version: "1.2", Format: 3}), fmt.Sprintf("%+v", got)
	})
	if _, heard := a.PeerBuild("C"); heard {
		t.Fatal("an unknown member has a build")
	}
}
