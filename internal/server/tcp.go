package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
	"github.com/porthole/porthole/internal/transport"
)

// tcpPorts serves TCP tunnels: one listener per bound public port, on the
// same host as the public HTTP listener.
type tcpPorts struct {
	s      *Server
	lo, hi int

	mu        sync.Mutex
	listeners map[int]net.Listener
	closed    bool
}

func newTCPPorts(s *Server, lo, hi int) *tcpPorts {
	return &tcpPorts{s: s, lo: lo, hi: hi, listeners: make(map[int]net.Listener)}
}

func tcpKey(port int) string { return "tcp/" + strconv.Itoa(port) }

func (p *tcpPorts) bind(ctx context.Context, ss *session, b *protocol.Bind, t *tunnel) error {
	if b.RemotePort != 0 {
		if b.RemotePort < p.lo || b.RemotePort > p.hi {
			return protocol.Err(protocol.CodePortUnavailable, true, "port %d is outside this server's TCP range %d-%d", b.RemotePort, p.lo, p.hi)
		}
		if err := p.s.deps.Policy.CheckPort(ctx, ss.ident, b.RemotePort); err != nil {
			return err
		}
		err := p.claim(ss, t, b.RemotePort, b.Pool)
		if err == nil || !b.Random {
			return err
		}
	}
	if sc := ss.ident.Scope; sc != nil && !sc.TCP {
		// A credential granted only some ports gets one of those.
		for _, port := range sc.TCPPorts {
			if port < p.lo || port > p.hi {
				continue
			}
			if p.s.deps.Policy.CheckPort(ctx, ss.ident, port) == nil && p.claim(ss, t, port, b.Pool) == nil {
				t.random = true
				return nil
			}
		}
		if len(sc.TCPPorts) > 0 {
			return protocol.Err(protocol.CodePortUnavailable, true, "no port this credential may bind is free in %d-%d (its scope allows %s)", p.lo, p.hi, sc)
		}
		return sc.AllowPort(0)
	}
	// Try random ports: cheap when the range is mostly free, and a port
	// is never handed out in a predictable order.
	span := p.hi - p.lo + 1
	for range min(64, span*2) {
		port := p.lo + rand.IntN(span)
		if _, held := p.s.reg.Lookup(tcpKey(port)); held {
			continue
		}
		if err := p.s.deps.Policy.CheckPort(ctx, ss.ident, port); err != nil {
			if isCode(err, protocol.CodeNameReserved) {
				continue
			}
			return err
		}
		if err := p.claim(ss, t, port, b.Pool); err == nil {
			t.random = true
			return nil
		}
	}
	return protocol.Err(protocol.CodePortUnavailable, false, "no free TCP port in %d-%d", p.lo, p.hi)
}

// claim takes port for t: the registry claim first (so two clients cannot
// race), then the listener, which may already exist while the port was held
// for this owner during a grace period.
func (p *tcpPorts) claim(ss *session, t *tunnel, port int, pool *protocol.Pool) error {
	key := tcpKey(port)
	// Set before the claim publishes t: a listener held open for this
	// port may hand t a visitor at once.
	t.key, t.port = key, port
	if err := p.s.claim(ss, t, key, pool); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.s.unclaim(t, 0)
		return protocol.Err(protocol.CodeShuttingDown, false, "server is shutting down")
	}
	if err := p.listenLocked(port); err != nil {
		p.s.unclaim(t, 0)
		return protocol.Err(protocol.CodePortUnavailable, true, "port %d is not available on the server: %v", port, errors.Unwrap(err))
	}
	t.urls = []string{fmt.Sprintf("tcp://%s:%d", p.s.cfg.Domain, port)}
	return nil
}

func (p *tcpPorts) accept(port int, ln net.Listener) {
	key := tcpKey(port)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A passing error such as running out of file descriptors:
			// wait and go on, as http.Server does, rather than leave the
			// port bound and dead.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.s.log.Warn("tcp accept error", "port", port, "err", err, "retry_in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		claim, ok := p.s.reg.Lookup(key)
		if !ok {
			c.Close()
			continue
		}
		if claim.Endpoint == nil && claim.NodeAddr != "" && p.s.cluster != nil {
			// Held at another node of the cluster: pass the connection on.
			vc, r := p.s.admitVisitor(c)
			if r != nil {
				c.Close()
				continue
			}
			go p.forwardToNode(vc, port, claim)
			continue
		}
		t := p.pickFor(claim, remoteIP(c.RemoteAddr().String()))
		if t == nil {
			// Held for a reconnecting client, or refused by its rules.
			c.Close()
			continue
		}
		vc, r := p.s.admitVisitor(c)
		if r != nil {
			c.Close()
			continue
		}
		go p.serve(t, port, vc)
	}
}

// listenLocked opens the public listener of port unless it is open; p.mu
// is held.
func (p *tcpPorts) listenLocked(port int) error {
	if _, ok := p.listeners[port]; ok {
		return nil
	}
	host, _, _ := net.SplitHostPort(p.s.cfg.HTTPAddr)
	ln, err := listen(net.JoinHostPort(host, strconv.Itoa(port)), p.s.cfg.HTTP.KeepAlive.D())
	if err != nil {
		return err
	}
	ln = p.s.proxyHeaders(ln)
	p.listeners[port] = ln
	go p.accept(port, ln)
	return nil
}

// pickFor returns the tunnel that takes a visitor from ip on claim's
// port, or nil when nobody does (the client is away, or the tunnel's
// access rules refuse ip).
func (p *tcpPorts) pickFor(claim *registry.Claim[*route], ip netip.Addr) *tunnel {
	if claim.Endpoint == nil || claim.Endpoint.access.denies(ip) {
		return nil
	}
	return claim.Endpoint.pick(nil)
}

// serve pipes c through t, within t's limit on connections at once; it
// returns when the connection ends.
func (p *tcpPorts) serve(t *tunnel, port int, c net.Conn) {
	if t.maxConns > 0 {
		if t.inflight.Add(1) > t.maxConns {
			t.inflight.Add(-1)
			p.s.hits.Hit(limits.TunnelConnections, "port", port, "user", t.sess.ident.User)
			c.Close()
			return
		}
		defer t.inflight.Add(-1)
	}
	p.forward(t, c)
}

func (p *tcpPorts) forward(t *tunnel, c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := t.openStream(ctx, c.RemoteAddr().String(), c.LocalAddr().String())
	if err != nil && t.route != nil && t.route.spread() {
		// A pool member that cannot take the connection: try another.
		t.markDown()
		if other := t.route.pick(t); other != nil {
			t = other
			st, err = t.openStream(ctx, c.RemoteAddr().String(), c.LocalAddr().String())
		}
	}
	cancel()
	if err != nil {
		c.Close()
		return
	}
	t.requests.Add(1)
	t.active.Add(1)
	defer t.active.Add(-1)
	start := time.Now()
	in, out := transport.Join(c, st)
	p.s.log.Info("tcp connection", "port", t.port, "remote", c.RemoteAddr().String(), "bytes_in", in, "bytes_out", out,
		"duration", time.Since(start).Round(time.Millisecond).String())
}

// release frees t's port, or holds it (listener included) for grace.
func (p *tcpPorts) release(t *tunnel, grace time.Duration) {
	p.s.unclaim(t, grace)
	if grace <= 0 {
		p.closeIfFree(t.port)
		return
	}
	time.AfterFunc(grace+time.Second, func() { p.closeIfFree(t.port) })
}

func (p *tcpPorts) closeIfFree(port int) {
	// Checked under the lock that claim takes to reuse a listener, so a
	// bind in between cannot lose its listener.
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.s.reg.Lookup(tcpKey(port)); ok && (c.Active() || c.NodeAddr != "") {
		// Served here, or at another node whose visitors this node
		// passes on.
		return
	}
	if ln, ok := p.listeners[port]; ok {
		ln.Close()
		delete(p.listeners, port)
	}
}

func (p *tcpPorts) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for port, ln := range p.listeners {
		ln.Close()
		delete(p.listeners, port)
	}
}

// tcpPort parses a registry key made by tcpKey.
func tcpPort(key string) (int, bool) {
	rest, ok := strings.CutPrefix(key, "tcp/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}
