package integration

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxy is a fault-injecting TCP proxy in front of one member's port.
// Members dial each other through proxies and from distinct loopback source
// IPs, so a proxy can cut traffic from chosen members: it closes their
// connections and blackholes new ones (accepted, never answered) until
// healed, which is what a member behind a dead switch port sees.
type proxy struct {
	l      net.Listener
	target string

	mu      sync.Mutex
	blocked map[string]bool // source IPs
	conns   map[net.Conn]string
	wg      sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, blocked: map[string]bool{}, conns: map[net.Conn]string{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// setTarget points the proxy at a member whose port was chosen at start.
func (p *proxy) setTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		p.mu.Lock()
		p.conns[c] = src
		blocked := p.blocked[src]
		p.mu.Unlock()
		if blocked {
			continue // blackhole: held open, never forwarded, closed on heal
		}
		p.wg.Add(1)
		go p.forward(c, src)
	}
}

func (p *proxy) forward(c net.Conn, src string) {
	defer p.wg.Done()
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	up, err := net.Dial("tcp", target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	p.conns[up] = src
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	p.drop(c)
	p.drop(up)
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut stops all traffic from the given source IPs.
func (p *proxy) cut(ips ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ip := range ips {
		p.blocked[ip] = true
	}
	for c, src := range p.conns {
		if p.blocked[src] {
			c.Close()
			delete(p.conns, c)
		}
	}
}

// heal lets every source through again; blackholed connections are closed
// so that their clients reconnect.
func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, src := range p.conns {
		if p.blocked[src] {
			c.Close()
			delete(p.conns, c)
		}
	}
	p.blocked = map[string]bool{}
}

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
