package client

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
)

// tunnel is one configured tunnel and what the server gave it.
type tunnel struct {
	bindID uint32
	name   string
	cfg    TunnelConfig
	target Target
	log    *slog.Logger
	http   *httpForwarder // HTTP tunnels

	mu       sync.Mutex
	ids      map[string]bool // server-side tunnel ids, one per session that bound it
	linkURL  map[int]string  // the first URL each link got, to report changes
	urls     []string        // public URLs; kept across reconnects
	assigned string          // subdomain or port the server chose, asked for again on reconnect
	port     int
	random   bool

	requests  atomic.Int64
	errors    atomic.Int64
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	openConns atomic.Int64
	unhealthy atomic.Bool // last health check failed
}

// TunnelStatus is a tunnel as reported by the status API and events.
type TunnelStatus struct {
	Name      string   `json:"name"`
	Proto     string   `json:"proto"`
	URL       string   `json:"public_url"`
	URLs      []string `json:"public_urls"`
	Target    string   `json:"target"`
	Requests  int64    `json:"requests"`
	Errors    int64    `json:"errors"`
	BytesIn   int64    `json:"bytes_in"`
	BytesOut  int64    `json:"bytes_out"`
	OpenConns int64    `json:"open_connections"`
	Bound     bool     `json:"bound"`
}

func (t *tunnel) status() *TunnelStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := &TunnelStatus{
		Name:      t.name,
		Proto:     t.cfg.Proto,
		URLs:      append([]string(nil), t.urls...),
		Target:    t.target.String(),
		Requests:  t.requests.Load(),
		Errors:    t.errors.Load(),
		BytesIn:   t.bytesIn.Load(),
		BytesOut:  t.bytesOut.Load(),
		OpenConns: t.openConns.Load(),
		Bound:     len(t.ids) > 0,
	}
	if len(t.urls) > 0 {
		st.URL = t.urls[0]
	}
	return st
}

// serveTCP forwards one TCP stream to the local target, after a PROXY
// protocol header when the tunnel asks for one.
func (t *tunnel) serveTCP(st net.Conn, h *protocol.StreamHeader) {
	remote := h.RemoteAddr
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	local, err := newLocalDialer().DialContext(ctx, "tcp", t.target.Host)
	cancel()
	if err != nil {
		t.errors.Add(1)
		t.log.Warn("local app unreachable", "target", t.target.String(), "err", err)
		st.Close()
		return
	}
	if v := t.cfg.ProxyProtocol; v != "" {
		if err := writeProxyHeader(local, v, h.RemoteAddr, h.PublicAddr); err != nil {
			t.errors.Add(1)
			t.log.Warn("PROXY protocol header not sent", "target", t.target.String(), "err", err)
			local.Close()
			st.Close()
			return
		}
	}
	t.requests.Add(1)
	t.openConns.Add(1)
	start := time.Now()
	in, out := transport.Join(st, local)
	t.openConns.Add(-1)
	t.bytesIn.Add(in)
	t.bytesOut.Add(out)
	t.log.Info("tcp connection", "remote", remote, "bytes_in", in, "bytes_out", out, "duration", time.Since(start).Round(time.Millisecond).String())
}
