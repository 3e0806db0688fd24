package tunneltest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a target address,
// and can break them the ways networks do: Cut closes every connection (a
// restart), Blackhole stops moving bytes but keeps the sockets open (a NAT
// entry or a firewall that drops silently), Refuse turns new connections
// away (a server that is down).
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[*proxyConn]struct{}
	held    []net.Conn // server-side halves kept open by CutClientSide
	refuse  bool
	wg      sync.WaitGroup
	closing bool
}

type proxyConn struct {
	a, b net.Conn
	// blackholed is closed to stop forwarding without closing.
	blackholed chan struct{}
	once       sync.Once
	left       int // directions still copying; guarded by Proxy.mu
	// hold keeps the target-side socket open after the client side is
	// closed; guarded by Proxy.mu.
	hold bool
}

// NewProxy listens on 127.0.0.1 and forwards to target until cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse || p.closing
		p.mu.Unlock()
		if refuse {
			a.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		pc := &proxyConn{a: a, b: b, blackholed: make(chan struct{}), left: 2}
		p.mu.Lock()
		p.conns[pc] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pc, a, b)
		go p.pipe(pc, b, a)
	}
}

func (p *Proxy) pipe(pc *proxyConn, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-pc.blackholed:
				// Swallow the bytes, as a dead path does; keep
				// reading so the sender never sees back-pressure
				// that would tell it something is wrong.
				continue
			default:
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			select {
			case <-pc.blackholed:
				// A dead path carries no FIN or RST either: the other
				// side must find out by itself. Proxy.Close ends it.
				return
			default:
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			switch {
			case pc.hold:
				pc.a.Close()
			case err == io.EOF:
				if cw, ok := dst.(*net.TCPConn); ok {
					cw.CloseWrite()
				}
			default:
				pc.a.Close()
				pc.b.Close()
			}
			pc.left--
			if pc.left == 0 {
				pc.a.Close()
				if pc.hold {
					p.held = append(p.held, pc.b)
				} else {
					pc.b.Close()
				}
				delete(p.conns, pc)
			}
			return
		}
	}
}

// Cut closes every open connection, both ways.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.a.Close()
		pc.b.Close()
		delete(p.conns, pc)
	}
}

// CutClientSide closes the client-facing side of every open connection
// and leaves the target-facing side open and silent: the client sees its
// connection drop while the target still believes it is up.
func (p *Proxy) CutClientSide() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.hold = true
		pc.a.Close()
	}
}

// Blackhole makes every open connection drop all bytes from now on while
// its sockets stay open. New connections are forwarded normally.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.once.Do(func() { close(pc.blackholed) })
	}
}

// Refuse makes the proxy close new connections at once (on) or forward
// them again (off).
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Conns is the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes everything it holds.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.ln.Close()
	p.mu.Lock()
	for pc := range p.conns {
		pc.a.Close()
		pc.b.Close()
	}
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
	p.mu.Unlock()
	p.wg.Wait()
}
