package link

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/transport"
)

// Dialer forwards visitors' requests and connections to other nodes: one
// authenticated session per peer address, opened on first use and again
// after it ends. Its exported fields are limits, each with a safe
// default when zero; set them before first use.
type Dialer struct {
	// DialTimeout bounds connecting to a peer and its handshake.
	DialTimeout time.Duration
	// MaxStreams bounds the open streams per peer; a request past it
	// waits for one to end, as long as its context allows.
	MaxStreams int
	// IdleTimeout closes kept-alive streams, and sessions without
	// streams, idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a response's header block from a peer.
	MaxHeaderBytes int
	// ErrorPage, when set, writes the answer to a visitor whose request
	// could not be forwarded (status 502; err says why). The default is
	// a short text.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int, err error)

	self   string
	log    *zap.Logger
	id     *identity
	idErr  error
	budget *transport.Budget
	proxy  *httputil.ReverseProxy
	// The holder's stale answer echoes a nonce that the app behind the
	// tunnel never sees, so the app cannot forge one: a random prefix
	// and a counter.
	noncePrefix string
	nonce       atomic.Uint64

	mu     sync.Mutex
	closed bool
	peers  map[string]*peer
	wg     sync.WaitGroup

	stats dialerStats
}

// NewDialer returns a dialer for the cluster that shares secret; self
// is this node's name, passed to peers for their logs.
func NewDialer(secret []byte, self string, log *zap.Logger) *Dialer {
	if log == nil {
		log = zap.NewNop()
	}
	d := &Dialer{self: self, log: log, peers: map[string]*peer{}, budget: transport.NewBudget(256 << 20)}
	d.id, d.idErr = deriveIdentity(secret)
	d.noncePrefix = rand.Text()[:16] + "-"
	d.proxy = d.newProxy()
	return d
}

// errDialerClosed is returned after Close.
var errDialerClosed = errors.New("cluster link: dialer closed")

// peer is one remote node: its session, and the HTTP transport over its
// streams.
type peer struct {
	d    *Dialer
	addr string
	sem  chan struct{}
	tr   *httpfwd.Transport

	mu      sync.Mutex
	sess    *transport.Session
	lastErr error
	errAt   time.Time
}

func (d *Dialer) peer(addr string) (*peer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errDialerClosed
	}
	if d.idErr != nil {
		return nil, d.idErr
	}
	p := d.peers[addr]
	if p == nil {
		p = &peer{d: d, addr: addr, sem: make(chan struct{}, orDefault(d.MaxStreams, DefaultDialerMaxStreams))}
		idle := orDefault(d.IdleTimeout, DefaultIdleTimeout)
		maxHeader := orDefault(d.MaxHeaderBytes, httpfwd.DefaultMaxHeaderBytes)
		open := func(ctx context.Context, _, _ string) (net.Conn, error) { return p.open(ctx, kindHTTP) }
		p.tr = &httpfwd.Transport{
			Dial:           func(ctx context.Context) (net.Conn, error) { return open(ctx, "", "") },
			MaxIdle:        64,
			IdleTimeout:    idle,
			MaxHeaderBytes: maxHeader,
			Fallback: &http.Transport{
				DialContext:            open,
				MaxIdleConnsPerHost:    64,
				IdleConnTimeout:        idle,
				MaxResponseHeaderBytes: int64(maxHeader),
				DisableCompression:     true,
				// Requests with a body wait for the holder's 100
				// Continue, which it sends only once it serves them: a
				// stale answer leaves the body unread, to be sent again.
				ExpectContinueTimeout: 30 * time.Second,
			},
		}
		d.peers[addr] = p
	}
	return p, nil
}

// dialBackoff is how long a failed dial is remembered: requests in the
// meantime fail at once instead of each waiting for a dead peer.
const dialBackoff = 500 * time.Millisecond

// session returns the peer's session, dialing one if needed.
func (p *peer) session(ctx context.Context) (*transport.Session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess != nil && !p.sess.IsClosed() {
		return p.sess, nil
	}
	if p.lastErr != nil && time.Since(p.errAt) < dialBackoff {
		return nil, p.lastErr
	}
	sess, err := p.d.dial(ctx, p.addr)
	if err != nil {
		p.lastErr, p.errAt = err, time.Now()
		return nil, err
	}
	p.lastErr = nil
	p.sess = sess
	return sess, nil
}

// dial connects and authenticates to addr and starts a session.
func (d *Dialer) dial(ctx context.Context, addr string) (*transport.Session, error) {
	timeout := orDefault(d.DialTimeout, DefaultHandshakeTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nd := &net.Dialer{KeepAlive: 30 * time.Second}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster link to %s: %w", addr, err)
	}
	tc := tls.Client(c, d.id.clientConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster link to %s: handshake: %w", addr, err)
	}
	// The server's session accepts streams, this one opens them.
	sess, err := transport.NewClientSession(newBatchConn(tc), sessionOptions(1, d.budget, d.log))
	if err != nil {
		c.Close()
		return nil, err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		sess.Close()
		return nil, errDialerClosed
	}
	d.wg.Add(1)
	d.mu.Unlock()
	d.stats.sessions.Add(1)
	go func() {
		defer d.wg.Done()
		keepAlive(sess, orDefault(d.IdleTimeout, DefaultIdleTimeout), d.log.With(zap.String("peer", addr)))
		d.stats.sessions.Add(-1)
	}()
	return sess, nil
}

// errTooManyStreams is the error of a request that found no stream slot.
var errTooManyStreams = errors.New("cluster link: too many streams to the peer")

// open opens a stream of kind on the peer's session, within its bound of
// streams, and writes the kind byte.
func (p *peer) open(ctx context.Context, kind byte) (net.Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errTooManyStreams, ctx.Err())
	}
	release := func() { <-p.sem }
	for attempt := 0; ; attempt++ {
		sess, err := p.session(ctx)
		if err != nil {
			release()
			return nil, err
		}
		st, err := sess.OpenStream()
		if err != nil {
			// A session that ended (or is going away) under us: one
			// more try on a new one.
			if attempt == 0 {
				if errors.Is(err, transport.ErrSessionShutdown) || errors.Is(err, errRemoteGoAway) {
					sess.Close()
					continue
				}
			}
			release()
			return nil, fmt.Errorf("cluster link to %s: %w", p.addr, err)
		}
		if _, err := st.Write([]byte{kind}); err != nil {
			st.Close()
			release()
			return nil, fmt.Errorf("cluster link to %s: %w", p.addr, err)
		}
		return &stream{Conn: httpfwd.CloseReads(st), release: release}, nil
	}
}

// Close closes every session; forwarded requests and connections in
// progress are cut.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	peers := d.peers
	d.peers = map[string]*peer{}
	d.mu.Unlock()
	for _, p := range peers {
		p.tr.Close()
		p.mu.Lock()
		if p.sess != nil {
			p.sess.Close()
		}
		p.mu.Unlock()
	}
	d.wg.Wait()
	return nil
}

// Stats returns the dialer's counters.
func (d *Dialer) Stats() DialerStats {
	return DialerStats{
		Sessions: d.stats.sessions.Load(),
		HTTPOut:  d.stats.httpOut.Load(),
		TCPOut:   d.stats.tcpOut.Load(),
		StaleOut: d.stats.staleOut.Load(),
		Failed:   d.stats.failed.Load(),
	}
}
