package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
)

// Accept completes the WebSocket handshake on a request the caller has
// already authorized, and returns the server side of a session.
func Accept(w http.ResponseWriter, r *http.Request, o Options) (*Session, error) {
	ws, err := websocket.Accept(batchingHijacker{w}, r, &websocket.AcceptOptions{
		Subprotocols: acceptSubprotocols(o.AllowCompression),
		// Tunnel clients are programs, not browsers: there is no Origin
		// to check, and credentials are not ambient cookies.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	nc, compressed, ok := negotiated(websocket.NetConn(context.Background(), ws, websocket.MessageBinary), ws.Subprotocol())
	if !ok {
		ws.Close(websocket.StatusProtocolError, "porthole: expected subprotocol "+protocol.Subprotocol)
		return nil, fmt.Errorf("client did not ask for subprotocol %s", protocol.Subprotocol)
	}
	if compressed && o.Logger != nil {
		o.Logger.Debug("session compressed", "compression", "zstd", "remote", r.RemoteAddr)
	}
	s, err := NewServerSession(nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// DialOptions configures the client side of the handshake.
type DialOptions struct {
	Header    http.Header
	TLSConfig *tls.Config
	// Timeout bounds TCP connect, TLS and WebSocket handshakes together.
	Timeout time.Duration
	Mux     Options
	// Compress asks the server to compress the session. A server that
	// does not agree is not an error: the session runs uncompressed and
	// Mux.Logger is told.
	Compress bool
}

// HandshakeError is a refusal by the server before the upgrade: it carries
// the HTTP status and the server's reason, decoded from the JSON body when
// the server is porthole.
type HandshakeError struct {
	Status int
	Reason *protocol.Error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("server refused the connection (HTTP %d): %s", e.Status, e.Reason.Message)
}

func (e *HandshakeError) Unwrap() error { return e.Reason }

// Dial connects to a server's tunnel listener (ws:// or wss://) and returns
// the client side of a session.
func Dial(ctx context.Context, url string, o DialOptions) (*Session, error) {
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dialer := &net.Dialer{Timeout: o.Timeout, KeepAlive: 15 * time.Second}
	var batcher *frameBatcher
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     o.TLSConfig,
		TLSHandshakeTimeout: o.Timeout,
		ForceAttemptHTTP2:   false,
		Proxy:               http.ProxyFromEnvironment,
	}
	if direct, err := noProxy(url); err == nil && direct {
		// Without a proxy in between the connection is ours end to end:
		// batch each WebSocket frame into one write (see frameBatcher),
		// above TLS for wss:// so that a frame is also one TLS record.
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			batcher = &frameBatcher{Conn: c}
			return batcher, nil
		}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tlsClient(raw, o.TLSConfig, addr)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			batcher = &frameBatcher{Conn: tc}
			return batcher, nil
		}
	}
	defer tr.CloseIdleConnections()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		HTTPHeader:      o.Header,
		Subprotocols:    dialSubprotocols(o.Compress),
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, handshakeError(resp)
		}
		return nil, err
	}
	nc, compressed, ok := negotiated(websocket.NetConn(context.Background(), ws, websocket.MessageBinary), ws.Subprotocol())
	if !ok || (compressed && !o.Compress) {
		ws.Close(websocket.StatusProtocolError, "expected subprotocol "+protocol.Subprotocol)
		return nil, &HandshakeError{Status: resp.StatusCode, Reason: protocol.Err(protocol.CodeUnsupportedVersion, true,
			"server does not speak %s (is this a porthole tunnel listener?)", protocol.Subprotocol)}
	}
	if batcher != nil {
		batcher.on.Store(true)
	}
	logCompression(o, compressed)
	s, err := NewClientSession(nc, o.Mux)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

func handshakeError(resp *http.Response) error {
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	}
	reason, ok := protocol.DecodeRefusal(body)
	if !ok {
		// Not a porthole server, or a proxy in between answered.
		final := resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusNotFound
		msg := http.StatusText(resp.StatusCode)
		if resp.StatusCode == http.StatusNotFound {
			msg = "no tunnel listener at this address (404); check --server"
		}
		reason = protocol.Err(protocol.CodeBadRequest, final, "%s", msg)
	}
	return &HandshakeError{Status: resp.StatusCode, Reason: reason}
}

// IsHandshakeError reports whether err is a refusal by the server.
func IsHandshakeError(err error) (*HandshakeError, bool) {
	var he *HandshakeError
	ok := errors.As(err, &he)
	return he, ok
}

// noProxy reports whether the environment sends requests for rawURL
// straight to the server rather than through an HTTP proxy.
func noProxy(rawURL string) (bool, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	return p == nil, err
}

// tlsClient starts TLS on raw as http.Transport would: the configured
// settings, the dialed host as server name unless one is set, HTTP/1.1.
func tlsClient(raw net.Conn, cfg *tls.Config, addr string) *tls.Conn {
	c := cfg.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	c.NextProtos = []string{"http/1.1"}
	return tls.Client(raw, c)
}

// batchingHijacker hands coder/websocket, which writes through the
// bufio.Writer it gets from Hijack and keeps it for the connection's life,
// a 16-byte one over a frameBatcher instead of net/http's 4 KiB one. Each
// frame still goes out in one write, and an idle session holds no write
// buffer: the batcher's comes from a pool while a frame is in flight.
type batchingHijacker struct{ http.ResponseWriter }

func (h batchingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The 101 answer went out with the hijack: from here on every byte
	// written is a WebSocket frame.
	b := &frameBatcher{Conn: c}
	b.on.Store(true)
	return b, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(b, 16)), nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (h batchingHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
