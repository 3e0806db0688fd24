package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/porthole/porthole/internal/cluster"
	"github.com/porthole/porthole/internal/cluster/link"
	"github.com/porthole/porthole/internal/logging"
	"github.com/porthole/porthole/internal/registry"
	"github.com/porthole/porthole/internal/transport"
)

// ClusterDeps make the server one node of a cluster (docs/cluster.md):
// Node is its membership, joined by the caller, which the server leaves
// when it stops; Secret authenticates the cluster link.
type ClusterDeps struct {
	Node   *cluster.Node
	Secret []byte
}

// clusterSide is what a cluster node has on top of a single server: the
// shared registry, and the link to and from the other nodes.
type clusterSide struct {
	node   *cluster.Node
	reg    *cluster.Registry[*route]
	dialer *link.Dialer
	link   *link.Server
	ln     net.Listener
	m      *cluster.Metrics
}

func (s *Server) setupCluster(cd *ClusterDeps) error {
	if err := link.ValidateSecret(cd.Secret); err != nil {
		return err
	}
	zl := logging.Zap(s.log, "cluster_link")
	c := &clusterSide{node: cd.Node, reg: cluster.NewRegistry[*route](cd.Node), m: cd.Node.Metrics()}
	c.dialer = link.NewDialer(cd.Secret, cd.Node.Name(), zl)
	c.dialer.ErrorPage = s.nodeUnreachable
	c.link = link.NewServer(cd.Secret, clusterHandler{s}, zl)
	c.link.MaxHeaderBytes = s.cfg.HTTP.MaxHeaderBytes
	s.reg = c.reg
	s.cluster = c
	return nil
}

func (s *Server) startCluster() error {
	c := s.cluster
	ln, err := listen(s.cfg.Cluster.Addr, s.cfg.HTTP.KeepAlive.D())
	if err != nil {
		return fmt.Errorf("cluster listener: %w", err)
	}
	c.ln = ln
	go c.link.Serve(ln)
	return nil
}

// ClusterAddr returns the cluster listener's address, or nil.
func (s *Server) ClusterAddr() net.Addr { return addrOf(s.clusterListener()) }

func (s *Server) clusterListener() net.Listener {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.ln
}

// forwardHTTP sends a visitor's request for host to the node that holds
// it. A stale answer (the name moved since this node's route map last
// heard) makes it read the claim from the database and try once more,
// wherever the name is then.
func (s *Server) forwardHTTP(w http.ResponseWriter, r *http.Request, host string, c *registry.Claim[*route]) {
	cs := s.cluster
	for try := 0; ; try++ {
		start := time.Now()
		r = r.WithContext(context.WithValue(r.Context(), forwardingKey{}, c))
		err := cs.dialer.ForwardHTTP(w, r, c.NodeAddr, host, c.Generation)
		switch {
		case err == nil:
			cs.m.ForwardedOut.WithLabelValues("http", "ok").Inc()
			cs.m.ForwardLatency.Observe(time.Since(start).Seconds())
			return
		case !errors.Is(err, link.ErrStale):
			// The dialer has answered the visitor (nodeUnreachable), or
			// the visitor left.
			cs.m.ForwardedOut.WithLabelValues("http", "failed").Inc()
			return
		}
		cs.m.ForwardedOut.WithLabelValues("http", "stale").Inc()
		if try > 0 {
			break
		}
		if err := cs.reg.Refresh(host); err != nil {
			s.log.Warn("refreshing a stale route failed", "host", host, "err", err)
			break
		}
		next, ok := s.reg.Lookup(host)
		if !ok {
			s.stats.countRequest(http.StatusNotFound)
			s.notFound(w, r, host)
			return
		}
		if next.Endpoint != nil || next.NodeAddr == "" {
			s.serveClaim(w, r, host, next)
			return
		}
		c = next
	}
	s.stats.countRequest(http.StatusServiceUnavailable)
	s.clientAway(w, r, host)
}

// nodeUnreachable answers a visitor whose request could not reach the
// node holding its tunnel: that node is stopping or lost, and its
// clients are on their way to another node, so the visitor is asked to
// come back, as while a client reconnects.
func (s *Server) nodeUnreachable(w http.ResponseWriter, r *http.Request, _ int, err error) {
	host := canonicalHost(r.Host)
	if tried, _ := r.Context().Value(forwardingKey{}).(*registry.Claim[*route]); tried != nil && r.Context().Value(relayedKey{}) == nil &&
		(r.Body == nil || r.Body == http.NoBody) {
		if c, ok := s.cluster.reg.TakeOver(host); ok {
			// The client's other link is here: serve it, and take the
			// name back from the node that cannot be reached.
			s.serveClaim(w, r.WithContext(context.WithValue(r.Context(), relayedKey{}, true)), host, c)
			return
		}
		// The node may have just given the name up and stopped: read the
		// claim again, and serve the request where the name is now. Only
		// a request without a body can be sent again whole.
		if s.cluster.reg.Refresh(host) == nil {
			if c, ok := s.reg.Lookup(host); ok && (c.Endpoint != nil || (c.NodeAddr != "" && c.Generation != tried.Generation)) {
				s.serveClaim(w, r.WithContext(context.WithValue(r.Context(), relayedKey{}, true)), host, c)
				return
			}
		}
	}
	s.log.Info("holding node unreachable", "host", r.Host, "err", err)
	s.stats.countRequest(http.StatusServiceUnavailable)
	w.Header().Set("Retry-After", "2")
	s.page(w, r, http.StatusServiceUnavailable, "Tunnel is moving",
		fmt.Sprintf("The server holding %s cannot be reached right now.", canonicalHost(r.Host)),
		"Its client is moving to another server; try again in a few seconds.", "node_unreachable")
}

// forwardingKey carries the claim a request is being forwarded for;
// relayedKey marks a request sent on once more after its node could not
// be reached.
type (
	forwardingKey struct{}
	relayedKey    struct{}
)

// clusterHandler serves what other nodes forward here.
type clusterHandler struct{ s *Server }

func (h clusterHandler) ServeForwardedHTTP(w http.ResponseWriter, r *http.Request, host string, gen uint64) error {
	s := h.s
	c, ok := s.cluster.reg.HoldsAt(host, gen)
	if !ok {
		s.cluster.m.ForwardedIn.WithLabelValues("http", "stale").Inc()
		return link.ErrStale
	}
	s.cluster.m.ForwardedIn.WithLabelValues("http", "ok").Inc()
	s.serveClaim(w, r, host, c)
	return nil
}

func (h clusterHandler) ServeForwardedTCP(c net.Conn, port int, gen uint64, visitor netip.AddrPort) error {
	s := h.s
	claim, ok := s.cluster.reg.HoldsAt(tcpKey(port), gen)
	if !ok || claim.Endpoint == nil {
		s.cluster.m.ForwardedIn.WithLabelValues("tcp", "stale").Inc()
		return link.ErrStale
	}
	t := s.tcp.pickFor(claim, visitor.Addr())
	if t == nil {
		s.cluster.m.ForwardedIn.WithLabelValues("tcp", "refused").Inc()
		return errors.New("no tunnel takes the connection")
	}
	s.cluster.m.ForwardedIn.WithLabelValues("tcp", "ok").Inc()
	s.tcp.serve(t, port, c)
	return nil
}

// waitNamesMoved lets the clients told to go away bind their names at
// other nodes before this one stops serving them: until no name is
// served here any more, or ctx ends (clients with no other server stay
// to the end). Meanwhile this node serves on, and its visitors are
// forwarded wherever a name has moved.
func (s *Server) waitNamesMoved(ctx context.Context) {
	c := s.cluster
	if c == nil {
		return
	}
	if err := c.node.Drain(ctx); err != nil {
		s.log.Warn("marking the node as draining", "err", err)
	}
	start := time.Now()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	had := c.reg.Serving() > 0
	for c.reg.Serving() > 0 {
		select {
		case <-ctx.Done():
			s.log.Info("names still served here at the end of the drain", "names", c.reg.Serving())
			c.link.Shutdown(ctx)
			return
		case <-t.C:
		}
	}
	s.log.Info("every name moved to another node", "after", time.Since(start).Round(time.Millisecond).String())
	if had {
		// Requests other nodes sent before they heard of the move get
		// 421 here and go where the name is now.
		time.Sleep(250 * time.Millisecond)
	}
	// Requests forwarded here finish before the sessions that serve
	// them close.
	if err := c.link.Shutdown(ctx); err != nil {
		s.log.Warn("cluster link did not drain", "err", err)
	}
}

// leaveCluster ends the node's part in the cluster once its sessions
// are gone: no more forwarding either way, and its row says it left.
func (s *Server) leaveCluster(ctx context.Context) {
	c := s.cluster
	if c == nil {
		return
	}
	c.link.Shutdown(ctx)
	c.dialer.Close()
	if err := c.node.Leave(context.Background()); err != nil {
		s.log.Warn("leaving the cluster", "err", err)
	}
}

// forwardToNode pipes a visitor's connection on a TCP port held at
// another node to that node, trying once more after a stale answer.
func (p *tcpPorts) forwardToNode(vc net.Conn, port int, claim *registry.Claim[*route]) {
	cs := p.s.cluster
	visitor, _ := netip.ParseAddrPort(vc.RemoteAddr().String())
	var (
		conn net.Conn
		err  error
	)
	for try := 0; try < 2; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err = cs.dialer.DialTCP(ctx, claim.NodeAddr, port, claim.Generation, visitor)
		cancel()
		if err == nil || try > 0 {
			break
		}
		// Stale, or the node is gone: the name may be elsewhere now.
		cs.m.ForwardedOut.WithLabelValues("tcp", "stale").Inc()
		if cs.reg.Refresh(tcpKey(port)) != nil {
			break
		}
		next, ok := p.s.reg.Lookup(tcpKey(port))
		if !ok {
			break
		}
		if next.Endpoint != nil {
			if t := p.pickFor(next, visitor.Addr()); t != nil {
				p.serve(t, port, vc)
				return
			}
			break
		}
		if next.NodeAddr == "" {
			break
		}
		claim = next
	}
	if err != nil || conn == nil {
		cs.m.ForwardedOut.WithLabelValues("tcp", "failed").Inc()
		p.s.log.Info("tcp connection not forwarded", "port", port, "remote", vc.RemoteAddr().String(), "err", err)
		vc.Close()
		return
	}
	cs.m.ForwardedOut.WithLabelValues("tcp", "ok").Inc()
	in, out := transport.Join(vc, conn)
	p.s.log.Info("tcp connection forwarded", "port", port, "node", claim.Node, "remote", vc.RemoteAddr().String(), "bytes_in", in, "bytes_out", out)
}

// syncRemotePorts opens this node's listener for each TCP port held at
// another node (the contract: every node listens for every port held in
// the cluster) and closes those no node holds any more.
func (p *tcpPorts) syncRemotePorts() {
	remote := p.s.cluster.reg.Remote("tcp/")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for _, key := range remote {
		port, ok := tcpPort(key)
		if !ok || port < p.lo || port > p.hi {
			continue
		}
		if err := p.listenLocked(port); err != nil {
			p.s.log.Warn("cannot listen for a port held at another node", "port", port, "err", err)
		}
	}
	for port, ln := range p.listeners {
		if c, ok := p.s.reg.Lookup(tcpKey(port)); ok && (c.Active() || c.NodeAddr != "" || !c.HeldUntil.IsZero()) {
			continue
		}
		ln.Close()
		delete(p.listeners, port)
	}
}

// clusterLoop keeps the TCP listeners in step with the cluster's ports.
func (s *Server) clusterLoop(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.tcp.syncRemotePorts()
	}
}
