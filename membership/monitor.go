package membership

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/triadlm/triad/proto/peerpb"
)

// Link states and status words, exactly as shown in CLI, API and dashboard.
const (
	LinkUp      = "up"
	LinkDown    = "down"
	LinkUnknown = "unknown"

	StatusOperational          = "operational"
	StatusPartiallyOperational = "partially operational"
	StatusNotOperational       = "not operational"
)

// Defaults from DESIGN §11.
const (
	DefaultInterval  = time.Second
	DefaultFailAfter = 5 * time.Second
)

// Peer is another member, by name and licensing (gRPC) address.
type Peer struct {
	Name string
	Addr string
}

// Link is one edge of the membership triangle, with A < B.
type Link struct {
	A, B  string
	State string
	// DownSince, for a down link of this member: when it last heard the
	// other end (or, never heard, when it started listening for it).
	DownSince time.Time
}

// PingFunc sends one heartbeat to addr; the server supplies it (gRPC).
type PingFunc func(ctx context.Context, addr string, req *peerpb.PingRequest) (*peerpb.PingResponse, error)

// Monitor runs the heartbeat of one member and answers for all links.
type Monitor struct {
	interval  time.Duration
	failAfter time.Duration
	ping      PingFunc
	now       func() time.Time // wall clock sent to peers (may be shifted in tests)

	mu      sync.Mutex
	self    string
	peers   []Peer
	started time.Time
	heard   map[string]time.Time           // last reply from / ping by the peer (monotonic)
	views   map[string]map[string]peerView // peer -> its view of its links
	offsets map[string]time.Duration       // peer clock minus ours
	viewAt  map[string]time.Time           // when the view was received
	urls    map[string]string              // peer -> its HTTP base URL, as it last said
	selfURL string                         // this member's HTTP base URL, sent with pings
	kick    chan struct{}                  // ping now (new peers)
	builds  map[string]Build               // last build each peer reported
	build   func() Build                   // this member's, sent with every ping
	evalMu  sync.Mutex                     // serialises evaluate (taken before mu)

	health // alarms, isolation and events (health.go)
}

// NewMonitor makes a monitor; SetPeers gives it the other members once the
// cluster is formed. now is the wall clock this member reports.
func NewMonitor(self string, interval, failAfter time.Duration, ping PingFunc, now func() time.Time) *Monitor {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if failAfter <= 0 {
		failAfter = DefaultFailAfter
	}
	if now == nil {
		now = time.Now
	}
	return &Monitor{
		interval: interval, failAfter: failAfter, ping: ping, now: now,
		self: self, started: time.Now(),
		heard: map[string]time.Time{}, views: map[string]map[string]peerView{},
		offsets: map[string]time.Duration{}, viewAt: map[string]time.Time{}, urls: map[string]string{},
		kick:   make(chan struct{}, 1),
		builds: map[string]Build{}, build: func() Build { return Build{} },
		health: newHealth(),
	}
}

// Build is what a member reports about its software in every heartbeat:
// its version, the highest Raft command format it applies (0: a build from
// before formats were reported) and why it stopped applying the log ("":
// it applies it). See docs/upgrading.md.
type Build struct {
	Version string
	Format  uint32
	Halted  string
}

// SetBuild sets the function giving this member's build for its pings and
// answers (safe at any time).
func (m *Monitor) SetBuild(f func() Build) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.build = f
}

// PeerBuild returns the build peer last reported, and false when it has
// not been heard since this member started.
func (m *Monitor) PeerBuild(peer string) (Build, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.builds[peer]
	return b, ok
}

// SetPeers sets the other members (zero for standalone, two for failover)
// and pings them at once. New peers are "unknown" for one failure window.
func (m *Monitor) SetPeers(peers []Peer) {
	m.mu.Lock()
	m.peers = append([]Peer(nil), peers...)
	m.started = time.Now()
	m.reachedAny = m.started
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Peers returns the other members.
func (m *Monitor) Peers() []Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Peer(nil), m.peers...)
}

// Run pings every peer every interval until ctx ends. Link states change
// between pings (a peer goes down failAfter after it was last heard), so
// events are evaluated ten times per interval: a down period shown by the
// (live) alarms also leaves its events.
func (m *Monitor) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(m.interval/10, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.evaluate(now)
			}
		}
	}()
	defer func() { <-done }()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.pingAll(ctx)
		m.evaluate(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

func (m *Monitor) pingAll(ctx context.Context) {
	peers := m.Peers()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func(p Peer) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, m.interval)
			defer cancel()
			sent := m.now()
			b := m.ownBuild()
			resp, err := m.ping(cctx, p.Addr, &peerpb.PingRequest{From: m.self, NowMs: sent.UnixMilli(), Links: m.ownView(), HttpUrl: m.HTTPURL(),
				FormatVersion: b.Format, Version: b.Version, Halted: b.Halted})
			if err != nil || resp.GetName() != p.Name {
				return
			}
			m.record(p.Name, resp.GetNowMs(), resp.GetLinks(), resp.GetHttpUrl(), sent, m.now())
			m.recordBuild(p.Name, Build{Version: resp.GetVersion(), Format: resp.GetFormatVersion(), Halted: resp.GetHalted()})
		}(p)
	}
	wg.Wait()
}

// HandlePing answers a peer's ping; receiving it also proves the link works.
func (m *Monitor) HandlePing(req *peerpb.PingRequest) *peerpb.PingResponse {
	now := m.now()
	m.mu.Lock()
	known := false
	for _, p := range m.peers {
		known = known || p.Name == req.GetFrom()
	}
	m.mu.Unlock()
	if known {
		m.record(req.GetFrom(), req.GetNowMs(), req.GetLinks(), req.GetHttpUrl(), now, now)
		m.recordBuild(req.GetFrom(), Build{Version: req.GetVersion(), Format: req.GetFormatVersion(), Halted: req.GetHalted()})
	}
	b := m.ownBuild()
	return &peerpb.PingResponse{Name: m.self, NowMs: now.UnixMilli(), Links: m.ownView(), HttpUrl: m.HTTPURL(),
		FormatVersion: b.Format, Version: b.Version, Halted: b.Halted}
}

func (m *Monitor) ownBuild() Build {
	m.mu.Lock()
	f := m.build
	m.mu.Unlock()
	return f()
}

func (m *Monitor) recordBuild(peer string, b Build) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.builds[peer] = b
}

func (m *Monitor) record(peer string, peerNowMs int64, links []*peerpb.LinkView, url string, sent, recv time.Time) {
	// The peer read its clock somewhere between our send and receive.
	mid := sent.Add(recv.Sub(sent) / 2)
	view := make(map[string]peerView, len(links))
	for _, l := range links {
		view[l.GetPeer()] = peerView{state: l.GetState(), heardAgo: time.Duration(l.GetHeardAgoMs()) * time.Millisecond}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heard[peer] = time.Now()
	m.views[peer] = view
	m.viewAt[peer] = time.Now()
	m.offsets[peer] = time.UnixMilli(peerNowMs).Sub(mid)
	if url != "" {
		m.urls[peer] = url
	}
}

// SetHTTPURL sets this member's HTTP base URL, which every ping and ping
// answer carries so that each member can list the others' dashboards.
func (m *Monitor) SetHTTPURL(u string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.selfURL = u
}

// HTTPURL is this member's HTTP base URL as set by SetHTTPURL.
func (m *Monitor) HTTPURL() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.selfURL
}

// PeerHTTPURLs returns the HTTP base URL each peer last advertised (kept
// while it is down, so a dashboard can still try it).
func (m *Monitor) PeerHTTPURLs() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.urls))
	for k, v := range m.urls {
		out[k] = v
	}
	return out
}

// ownView is this member's view of its own links, sent with every ping.
func (m *Monitor) ownView() []*peerpb.LinkView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*peerpb.LinkView, 0, len(m.peers))
	for _, p := range m.peers {
		ago := int64(-1)
		if last, ok := m.heard[p.Name]; ok {
			ago = time.Since(last).Milliseconds()
		}
		out = append(out, &peerpb.LinkView{Peer: p.Name, State: m.ownStateLocked(p.Name), HeardAgoMs: ago})
	}
	return out
}

func (m *Monitor) ownStateLocked(peer string) string {
	last, ok := m.heard[peer]
	if ok && time.Since(last) < m.failAfter {
		return LinkUp
	}
	if !ok && time.Since(m.started) < m.failAfter {
		return LinkUnknown
	}
	return LinkDown
}

// lastHeardLocked is when peer was last heard, or when this member started
// listening for it if never.
func (m *Monitor) lastHeardLocked(peer string) time.Time {
	if t, ok := m.heard[peer]; ok {
		return t
	}
	return m.started
}

// PeerState is the state of the link from this member to peer.
func (m *Monitor) PeerState(peer string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ownStateLocked(peer)
}

// ClockOffsets returns each peer's clock minus ours, as last measured.
func (m *Monitor) ClockOffsets() map[string]time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]time.Duration, len(m.offsets))
	for k, v := range m.offsets {
		out[k] = v
	}
	return out
}

// Links returns the three links of a failover cluster (none for standalone),
// sorted. Links of this member come from its own pings; the link between the
// two peers comes from their views, taken only from a peer that is itself up.
func (m *Monitor) Links() []Link {
	m.mu.Lock()
	defer m.mu.Unlock()
	var links []Link
	for _, p := range m.peers {
		l := newLink(m.self, p.Name, m.ownStateLocked(p.Name))
		if l.State == LinkDown {
			l.DownSince = m.lastHeardLocked(p.Name)
		}
		links = append(links, l)
	}
	if len(m.peers) == 2 {
		a, b := m.peers[0].Name, m.peers[1].Name
		links = append(links, newLink(a, b, m.remoteStateLocked(a, b)))
	}
	sort.Slice(links, func(i, j int) bool {
		if links[i].A != links[j].A {
			return links[i].A < links[j].A
		}
		return links[i].B < links[j].B
	})
	return links
}

// peerView is what a peer said about one of its links.
type peerView struct {
	state    string
	heardAgo time.Duration // < 0: never heard
}

// remoteStateLocked judges the link a–b between two other members from
// their views, taken only from an endpoint that is itself up. A view says
// how long ago its sender last heard the other end; aged by the time since
// the view arrived, it gives the same 5-second rule as for this member's
// own links. The link is up when either end heard the other within the
// window (pings count in both directions).
func (m *Monitor) remoteStateLocked(a, b string) string {
	state := LinkUnknown
	for _, x := range [][2]string{{a, b}, {b, a}} {
		if m.ownStateLocked(x[0]) != LinkUp {
			continue
		}
		v, ok := m.views[x[0]][x[1]]
		if !ok {
			continue
		}
		s := v.state
		if s == LinkUp && max(v.heardAgo, 0)+time.Since(m.viewAt[x[0]]) >= m.failAfter {
			s = LinkDown // the view has aged past the failure window
		}
		switch {
		case s == LinkUp:
			return LinkUp
		case s == LinkDown:
			state = LinkDown
		}
	}
	return state
}

// String names the link "a – b".
func (l Link) String() string { return l.A + " – " + l.B }

func newLink(a, b, state string) Link {
	if b < a {
		a, b = b, a
	}
	return Link{A: a, B: b, State: state}
}

// Status is the cluster status word for a set of links. A standalone member
// (no links) is operational by itself.
func Status(links []Link) string {
	if len(links) == 0 {
		return StatusOperational
	}
	up := 0
	for _, l := range links {
		if l.State == LinkUp {
			up++
		}
	}
	switch {
	case up >= 2:
		return StatusOperational
	case up == 1:
		return StatusPartiallyOperational
	default:
		return StatusNotOperational
	}
}

// StatusWithLeader is the status word shown to operators: the links' word
// (Status), except that a member that knows no leader is never operational,
// whatever its links say: without a leader no license is served.
func StatusWithLeader(links []Link, leader string) string {
	if leader == "" {
		return StatusNotOperational
	}
	return Status(links)
}
