package membership

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/triadlm/triad/proto/peerpb"
)

const (
	testInterval  = 20 * time.Millisecond
	testFailAfter = 200 * time.Millisecond
	waitFor       = 5 * time.Second
)

// reply is how a fake peer answers a ping.
type reply struct {
	fail        bool              // return an error (peer unreachable)
	name        string            // name the peer answers with
	links       map[string]string // the peer's view of its own links
	clockOffset time.Duration     // peer clock minus real time
	url         string            // the peer's HTTP base URL
}

// fakeNet is a PingFunc backed by a map addr → reply.
type fakeNet struct {
	mu      sync.Mutex
	replies map[string]reply
	calls   map[string]int
	lastReq map[string]*peerpb.PingRequest
}

func newFakeNet() *fakeNet {
	return &fakeNet{replies: map[string]reply{}, calls: map[string]int{}, lastReq: map[string]*peerpb.PingRequest{}}
}

func (f *fakeNet) set(addr string, r reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[addr] = r
}

func (f *fakeNet) callCount(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[addr]
}

func (f *fakeNet) last(addr string) *peerpb.PingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq[addr]
}

func (f *fakeNet) ping(ctx context.Context, addr string, req *peerpb.PingRequest) (*peerpb.PingResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[addr]++
	f.lastReq[addr] = req
	r, ok := f.replies[addr]
	if !ok || r.fail {
		return nil, errors.New("connection refused")
	}
	resp := &peerpb.PingResponse{Name: r.name, NowMs: time.Now().Add(r.clockOffset).UnixMilli(), HttpUrl: r.url}
	peers := make([]string, 0, len(r.links))
	for p := range r.links {
		peers = append(peers, p)
	}
	sort.Strings(peers)
	for _, p := range peers {
		resp.Links = append(resp.Links, &peerpb.LinkView{Peer: p, State: r.links[p]})
	}
	return resp, nil
}

// startMonitor runs m until the test ends.
func startMonitor(t *testing.T, m *Monitor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Errorf("Monitor.Run did not return after its context ended")
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func linkMap(links []Link) map[string]string {
	out := map[string]string{}
	for _, l := range links {
		out[l.A+"-"+l.B] = l.State
	}
	return out
}

func linksAre(m *Monitor, want map[string]string) func() (bool, string) {
	return func() (bool, string) {
		got := linkMap(m.Links())
		if len(got) != len(want) {
			return false, fmt.Sprint(got)
		}
		for k, v := range want {
			if got[k] != v {
				return false, fmt.Sprint(got)
			}
		}
		return true, fmt.Sprint(got)
	}
}

var peersBC = []Peer{{Name: "B", Addr: "b:1"}, {Name: "C", Addr: "c:1"}}

func TestMonitorLinksFromPingsAndViews(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)

	eventually(t, "all links up", linksAre(m, map[string]string{"A-B": LinkUp, "A-C": LinkUp, "B-C": LinkUp}))
	if !peerUp(m, "B") || !peerUp(m, "C") {
		t.Errorf("PeerState(B)=%q PeerState(C)=%q, want both up", m.PeerState("B"), m.PeerState("C"))
	}
	if got := Status(m.Links()); got != StatusOperational {
		t.Errorf("Status = %q, want %q", got, StatusOperational)
	}
	// Every ping carries this member's name and its view of its own links.
	req := net.last("b:1")
	if req.GetFrom() != "A" {
		t.Errorf("ping From = %q, want A", req.GetFrom())
	}
	if len(req.GetLinks()) != 2 {
		t.Errorf("ping carries %d link views, want 2 (one per peer): %v", len(req.GetLinks()), req.GetLinks())
	}

	// When both live ends say the B–C link is down, it is down.
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkDown}})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkDown}})
	eventually(t, "B-C down from B's view", linksAre(m, map[string]string{"A-B": LinkUp, "A-C": LinkUp, "B-C": LinkDown}))
	if got := Status(m.Links()); got != StatusOperational {
		t.Errorf("Status with one link down = %q, want %q", got, StatusOperational)
	}

	// B stops answering: A–B goes down after failAfter, and B–C comes from
	// C's view alone (B's stale view is no longer used).
	net.set("b:1", reply{fail: true})
	eventually(t, "A-B down, B-C from C", linksAre(m, map[string]string{"A-B": LinkDown, "A-C": LinkUp, "B-C": LinkDown}))
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	eventually(t, "B-C up from C's view alone", linksAre(m, map[string]string{"A-B": LinkDown, "A-C": LinkUp, "B-C": LinkUp}))
	if got := m.PeerState("B"); got != LinkDown {
		t.Errorf("PeerState(B) = %q after B stopped answering, want %q", got, LinkDown)
	}

	// C stops answering too: nobody up can tell about B–C.
	net.set("c:1", reply{fail: true})
	eventually(t, "both peers down", linksAre(m, map[string]string{"A-B": LinkDown, "A-C": LinkDown, "B-C": LinkUnknown}))
	if got := Status(m.Links()); got != StatusNotOperational {
		t.Errorf("Status with both peers down = %q, want %q", got, StatusNotOperational)
	}

	// C comes back: its view is used again.
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkDown}})
	eventually(t, "C back", linksAre(m, map[string]string{"A-B": LinkDown, "A-C": LinkUp, "B-C": LinkDown}))
	if got := Status(m.Links()); got != StatusPartiallyOperational {
		t.Errorf("Status with one link up = %q, want %q", got, StatusPartiallyOperational)
	}
}

func TestMonitorUnknownBeforeFailAfter(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{fail: true})
	net.set("c:1", reply{fail: true})
	// failAfter is far longer than this test runs, so no reply ever means
	// "unknown", never "down".
	m := NewMonitor("A", testInterval, time.Minute, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)

	eventually(t, "several pings to each peer", func() (bool, string) {
		b, c := net.callCount("b:1"), net.callCount("c:1")
		return b >= 3 && c >= 3, fmt.Sprintf("pings b=%d c=%d", b, c)
	})
	want := map[string]string{"A-B": LinkUnknown, "A-C": LinkUnknown, "B-C": LinkUnknown}
	if ok, got := linksAre(m, want)(); !ok {
		t.Fatalf("links before failAfter = %s, want %v", got, want)
	}
	if got := m.PeerState("B"); got != LinkUnknown {
		t.Errorf("PeerState(B) = %q without any reply before failAfter, want %q", got, LinkUnknown)
	}
}

func TestMonitorDownAfterFailAfterWithoutReply(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{fail: true})
	net.set("c:1", reply{name: "C", links: map[string]string{"A": LinkUp, "B": LinkDown}})
	start := time.Now()
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)

	eventually(t, "A-B down", func() (bool, string) {
		got := linkMap(m.Links())
		return got["A-B"] == LinkDown, fmt.Sprint(got)
	})
	// Correctness, not speed: a peer never heard from is not declared down
	// before failAfter has passed since the monitor started.
	if el := time.Since(start); el < testFailAfter {
		t.Errorf("A-B reported down %s after start, before failAfter %s", el, testFailAfter)
	}
	eventually(t, "A-C up, B-C down (from C)", linksAre(m, map[string]string{"A-B": LinkDown, "A-C": LinkUp, "B-C": LinkDown}))
}

func TestMonitorIgnoresReplyWithWrongName(t *testing.T) {
	net := newFakeNet()
	// Something else answers on C's address (e.g. another cluster's member).
	net.set("b:1", reply{name: "B", links: map[string]string{"A": LinkUp, "C": LinkUp}})
	net.set("c:1", reply{name: "X", links: map[string]string{"A": LinkUp, "B": LinkUp}})
	m := NewMonitor("A", testInterval, time.Minute, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)

	eventually(t, "A-B up", func() (bool, string) {
		got := linkMap(m.Links())
		return got["A-B"] == LinkUp && net.callCount("c:1") >= 3, fmt.Sprint(got)
	})
	if peerUp(m, "C") || peerUp(m, "X") {
		t.Errorf("a reply with the wrong name marked a peer up: C=%q X=%q", m.PeerState("C"), m.PeerState("X"))
	}
	if got := linkMap(m.Links())["A-C"]; got != LinkUnknown {
		t.Errorf("A-C = %q, want %q", got, LinkUnknown)
	}
	if _, ok := m.ClockOffsets()["X"]; ok {
		t.Errorf("clock offset recorded for an impostor: %v", m.ClockOffsets())
	}
}

func TestMonitorClockOffsets(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B", clockOffset: 2 * time.Hour})
	net.set("c:1", reply{name: "C", clockOffset: -90 * time.Second})
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetPeers(peersBC)
	startMonitor(t, m)

	eventually(t, "offsets of both peers", func() (bool, string) {
		o := m.ClockOffsets()
		return len(o) == 2, fmt.Sprint(o)
	})
	const tol = 300 * time.Millisecond
	o := m.ClockOffsets()
	for peer, want := range map[string]time.Duration{"B": 2 * time.Hour, "C": -90 * time.Second} {
		if d := o[peer] - want; d < -tol || d > tol {
			t.Errorf("offset of %s = %s, want %s ± %s", peer, o[peer], want, tol)
		}
	}
	// The returned map is a copy.
	o["B"] = 0
	if m.ClockOffsets()["B"] == 0 {
		t.Errorf("ClockOffsets returned the monitor's own map")
	}
}

func TestMonitorOwnClockShift(t *testing.T) {
	// This member's clock is one hour behind; the peer's is right.
	shift := -time.Hour
	m := NewMonitor("A", testInterval, time.Minute, nil, func() time.Time { return time.Now().Add(shift) })
	m.SetPeers(peersBC)
	resp := m.HandlePing(&peerpb.PingRequest{From: "B", NowMs: time.Now().UnixMilli()})
	const tol = 300 * time.Millisecond
	if d := time.UnixMilli(resp.GetNowMs()).Sub(time.Now().Add(shift)); d < -tol || d > tol {
		t.Errorf("reply NowMs = %s, want this member's (shifted) clock %s", time.UnixMilli(resp.GetNowMs()), time.Now().Add(shift))
	}
	if d := m.ClockOffsets()["B"] - time.Hour; d < -tol || d > tol {
		t.Errorf("offset of B = %s, want 1h ± %s", m.ClockOffsets()["B"], tol)
	}
}

func TestHandlePing(t *testing.T) {
	// No Run: the only source of information is incoming pings.
	m := NewMonitor("A", testInterval, time.Minute, nil, nil)
	m.SetPeers(peersBC)

	resp := m.HandlePing(&peerpb.PingRequest{
		From:  "B",
		NowMs: time.Now().Add(2 * time.Hour).UnixMilli(),
		Links: []*peerpb.LinkView{{Peer: "A", State: LinkUp}, {Peer: "C", State: LinkDown}},
	})
	if resp.GetName() != "A" {
		t.Errorf("reply Name = %q, want A", resp.GetName())
	}
	if d := time.Since(time.UnixMilli(resp.GetNowMs())); d < -time.Second || d > time.Second {
		t.Errorf("reply NowMs is %s away from now", d)
	}
	view := map[string]string{}
	for _, l := range resp.GetLinks() {
		view[l.GetPeer()] = l.GetState()
	}
	if want := map[string]string{"B": LinkUp, "C": LinkUnknown}; fmt.Sprint(view) != fmt.Sprint(want) {
		t.Errorf("reply view = %v, want %v", view, want)
	}
	if got := m.PeerState("B"); got != LinkUp {
		t.Errorf("PeerState(B) = %q after B pinged us, want %q", got, LinkUp)
	}
	if d := m.ClockOffsets()["B"] - 2*time.Hour; d < -300*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("offset of B = %s, want about 2h", m.ClockOffsets()["B"])
	}
	// B's view tells us about B–C even though we never reached C.
	want := map[string]string{"A-B": LinkUp, "A-C": LinkUnknown, "B-C": LinkDown}
	if ok, got := linksAre(m, want)(); !ok {
		t.Errorf("links = %s, want %v", got, want)
	}

	// A ping from a member we do not know changes nothing.
	resp = m.HandlePing(&peerpb.PingRequest{From: "Z", NowMs: time.Now().UnixMilli(),
		Links: []*peerpb.LinkView{{Peer: "B", State: LinkDown}, {Peer: "C", State: LinkDown}}})
	if resp.GetName() != "A" {
		t.Errorf("reply to unknown peer Name = %q, want A", resp.GetName())
	}
	if peerUp(m, "Z") {
		t.Errorf("PeerState(Z) = %q for a member that is not a peer", m.PeerState("Z"))
	}
	if _, ok := m.ClockOffsets()["Z"]; ok {
		t.Errorf("clock offset recorded for unknown member Z")
	}
	for _, l := range resp.GetLinks() {
		if l.GetPeer() == "Z" {
			t.Errorf("reply view mentions unknown member Z: %v", resp.GetLinks())
		}
	}
	if ok, got := linksAre(m, want)(); !ok {
		t.Errorf("links after a ping from an unknown member = %s, want %v", got, want)
	}
}

func TestLinksSorted(t *testing.T) {
	m := NewMonitor("zulu", testInterval, time.Minute, nil, nil)
	m.SetPeers([]Peer{{Name: "yankee", Addr: "y:1"}, {Name: "alpha", Addr: "a:1"}})
	m.HandlePing(&peerpb.PingRequest{From: "yankee", Links: []*peerpb.LinkView{{Peer: "alpha", State: LinkUp}}})
	got := m.Links()
	want := []Link{
		{A: "alpha", B: "yankee", State: LinkUp},
		{A: "alpha", B: "zulu", State: LinkUnknown},
		{A: "yankee", B: "zulu", State: LinkUp},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Links() = %v, want %v", got, want)
	}
	for _, l := range got {
		if !(l.A < l.B) {
			t.Errorf("link %v: A is not < B", l)
		}
	}
}

func TestMonitorStandalone(t *testing.T) {
	net := newFakeNet()
	m := NewMonitor("A", testInterval, testFailAfter, net.ping, nil)
	m.SetPeers(nil)
	startMonitor(t, m)
	if links := m.Links(); len(links) != 0 {
		t.Errorf("standalone Links() = %v, want none", links)
	}
	if got := Status(m.Links()); got != StatusOperational {
		t.Errorf("standalone Status = %q, want %q", got, StatusOperational)
	}
	if len(m.Peers()) != 0 {
		t.Errorf("standalone Peers() = %v", m.Peers())
	}
}

func TestSetPeersCopies(t *testing.T) {
	m := NewMonitor("A", 0, 0, nil, nil)
	peers := []Peer{{Name: "B", Addr: "b:1"}, {Name: "C", Addr: "c:1"}}
	m.SetPeers(peers)
	peers[0].Name = "mutated"
	got := m.Peers()
	if len(got) != 2 || got[0].Name != "B" {
		t.Fatalf("Peers() = %v after the caller changed its slice", got)
	}
	got[1].Name = "mutated"
	if m.Peers()[1].Name != "C" {
		t.Fatalf("Peers() returned the monitor's own slice")
	}
	if m.interval != DefaultInterval || m.failAfter != DefaultFailAfter {
		t.Errorf("zero durations gave interval %s failAfter %s, want defaults %s %s", m.interval, m.failAfter, DefaultInterval, DefaultFailAfter)
	}
}

func peerUp(m *Monitor, peer string) bool { return m.PeerState(peer) == LinkUp }

func TestSetPeersPingsAtOnce(t *testing.T) {
	net := newFakeNet()
	net.set("b:1", reply{name: "B"})
	net.set("c:1", reply{name: "C"})
	// The ticker alone would not ping again within the test.
	m := NewMonitor("A", time.Hour, time.Hour, net.ping, nil)
	m.SetPeers(peersBC[:1])
	startMonitor(t, m)
	// The first round has taken its list of peers (B only).
	eventually(t, "B pinged", func() (bool, string) {
		return net.callCount("b:1") >= 1, fmt.Sprintf("pings b=%d", net.callCount("b:1"))
	})
	m.SetPeers(peersBC)
	eventually(t, "new peer C pinged and up", func() (bool, string) {
		return peerUp(m, "B") && peerUp(m, "C"), fmt.Sprintf("B=%s C=%s pings b=%d c=%d",
			m.PeerState("B"), m.PeerState("C"), net.callCount("b:1"), net.callCount("c:1"))
	})
}

func TestSetPeersRestartsFailureWindow(t *testing.T) {
	const failAfter = 500 * time.Millisecond
	m := NewMonitor("A", time.Hour, failAfter, nil, nil)
	// Long after start, a member never heard from is down...
	eventually(t, "B down", func() (bool, string) {
		return m.PeerState("B") == LinkDown, m.PeerState("B")
	})
	// ...but a peer that was just added gets one failure window first.
	m.SetPeers(peersBC)
	if got := m.PeerState("B"); got != LinkUnknown {
		t.Fatalf("PeerState(B) right after SetPeers = %q, want %q", got, LinkUnknown)
	}
	eventually(t, "B down again after failAfter", func() (bool, string) {
		return m.PeerState("B") == LinkDown, m.PeerState("B")
	})
}

// The B–C link as seen from A, from the two peers' views of it (both up).
func TestRemoteLinkFromViews(t *testing.T) {
	tests := []struct {
		bSaysC, cSaysB string // "" = the peer does not report the link
		want           string
	}{
		{LinkUp, LinkUp, LinkUp},
		{LinkDown, LinkDown, LinkDown},
		// Either end that heard the other within the window keeps it up
		// (pings count in both directions).
		{LinkUp, LinkDown, LinkUp},
		{LinkDown, LinkUp, LinkUp},
		{LinkUp, "", LinkUp},
		{"", LinkDown, LinkDown},
		{LinkUnknown, LinkUnknown, LinkUnknown},
		{"", "", LinkUnknown},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("B=%q C=%q", tc.bSaysC, tc.cSaysB), func(t *testing.T) {
			m := NewMonitor("A", testInterval, time.Minute, nil, nil)
			m.SetPeers(peersBC)
			view := func(peer, state string) []*peerpb.LinkView {
				if state == "" {
					return []*peerpb.LinkView{{Peer: "A", State: LinkUp}}
				}
				return []*peerpb.LinkView{{Peer: "A", State: LinkUp}, {Peer: peer, State: state}}
			}
			m.HandlePing(&peerpb.PingRequest{From: "B", Links: view("C", tc.bSaysC)})
			m.HandlePing(&peerpb.PingRequest{From: "C", Links: view("B", tc.cSaysB)})
			want := map[string]string{"A-B": LinkUp, "A-C": LinkUp, "B-C": tc.want}
			if ok, got := linksAre(m, want)(); !ok {
				t.Errorf("links = %s, want %v", got, want)
			}
		})
	}
}

// A view ages: "up, heard 250 ms ago" from a peer turns down when the
// failure window has passed since that hearing, without any new view.
func TestRemoteViewAges(t *testing.T) {
	m := NewMonitor("A", time.Hour, 400*time.Millisecond, nil, nil)
	m.SetPeers(peersBC)
	m.HandlePing(&peerpb.PingRequest{From: "B", Links: []*peerpb.LinkView{{Peer: "A", State: LinkUp}, {Peer: "C", State: LinkUp, HeardAgoMs: 250}}})
	if got := linkMap(m.Links())["B-C"]; got != LinkUp {
		t.Fatalf("B-C right after a fresh view = %s, want up", got)
	}
	m.mu.Lock()
	m.heard["B"] = time.Now() // keep B itself up
	m.viewAt["B"] = time.Now().Add(-200 * time.Millisecond)
	m.mu.Unlock()
	if got := linkMap(m.Links())["B-C"]; got != LinkDown {
		t.Fatalf("B-C once 250+200 ms > 400 ms since B heard C = %s, want down", got)
	}
}
