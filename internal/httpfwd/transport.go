package httpfwd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// Transport is an http.RoundTripper for the requests that dominate
// proxied traffic: GET, HEAD and OPTIONS without a body or an upgrade. It writes the request and
// reads the response on the calling goroutine, over kept-alive connections
// from its own pool, and hands everything else to Fallback.
//
// http.Transport serves each connection with a read loop and a write loop
// goroutine, so a request crosses goroutines four times on its way out and
// back. Through a tunnel that happens on both sides, on top of the
// multiplexer's own loops; at one connection the scheduler was 12-20% of
// the server's and client's CPU (docs/benchmarks.md). Here the handler's
// goroutine does the work itself.
type Transport struct {
	// Dial opens a new connection to the upstream.
	Dial func(ctx context.Context) (net.Conn, error)
	// Fallback carries requests with bodies, upgrades and Expect headers,
	// and must reach the same upstream.
	Fallback http.RoundTripper
	// MaxIdle bounds the kept-alive idle connections.
	MaxIdle int
	// IdleTimeout closes connections idle this long (0: never).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds each response's header block, status line
	// included (0: DefaultMaxHeaderBytes). The owner should set the
	// Fallback's limit (http.Transport.MaxResponseHeaderBytes) to match.
	MaxHeaderBytes int
	// MaxHeaderFields bounds each response's header fields, on both
	// paths (0: DefaultMaxHeaderFields).
	MaxHeaderFields int

	mu     sync.Mutex
	idle   []*conn // oldest first; reuse takes the newest
	sweep  *time.Timer
	closed bool
}

type conn struct {
	c        net.Conn
	lim      headerLimit // between c and br
	br       *bufio.Reader
	bw       *bufio.Writer
	idleTime time.Time
}

const bufSize = 16 << 10

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// fast reports whether req can take the fast path: an idempotent method
// (RFC 9110 section 9.2.2), so that it may be sent again when a kept-alive
// connection turns out to be gone, as http.Transport would.
func fast(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	if req.ContentLength > 0 || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return false
	}
	return req.URL != nil && req.URL.Scheme == "http"
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !fast(req) {
		return t.fallback(req)
	}
	for attempt := 0; ; attempt++ {
		// The second try dials: the other kept-alive connections may be
		// gone the same way (all streams of a peer session that ended).
		c, reused, err := t.get(req.Context(), attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.roundTrip(c, req)
		if err == nil {
			return resp, nil
		}
		c.close()
		// A kept-alive connection may have been closed by the other end
		// while idle; the request never reached it and has no body, so it
		// is sent again on a new connection, as http.Transport does.
		if !reused || attempt > 0 || req.Context().Err() != nil || !errors.Is(err, errIdleGone) {
			return nil, unwrapIdle(err)
		}
	}
}

// errIdleGone marks a failure before any byte of a response arrived.
var errIdleGone = errors.New("kept-alive connection closed")

type idleGone struct{ err error }

func (e *idleGone) Error() string        { return e.err.Error() }
func (e *idleGone) Unwrap() []error      { return []error{errIdleGone, e.err} }
func (e *idleGone) Is(target error) bool { return target == errIdleGone }

func unwrapIdle(err error) error {
	var ig *idleGone
	if errors.As(err, &ig) {
		return ig.err
	}
	return err
}

func (t *Transport) roundTrip(c *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// Cancelling the request unblocks a read or write in progress.
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(c.bw); err != nil {
		stop()
		return nil, &idleGone{err}
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, &idleGone{err}
	}
	resp, err := t.readFinal(c, req)
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	reusable := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.ContentLength == 0 {
		// A cancellation that already fired may leave a past deadline
		// on the connection: then it is not reused.
		reusable = stop() && reusable
		resp.Body = http.NoBody
		if reusable {
			t.put(c)
		} else {
			c.close()
		}
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, t: t, stop: stop, reusable: reusable}
	return resp, nil
}

// readFinal reads the response to req from c: the final one, after at
// most MaxInformational 1xx responses. 1xx answers other than 101 precede
// the real one (RFC 9110 section 15.2); 101 cannot come, upgrades take the
// fallback. Each 1xx goes to the request's ClientTrace Got1xxResponse
// hook, as http.Transport does: ReverseProxy's passes it on to its
// client (103 Early Hints for a page's GET), and an error from the hook
// ends the request.
func (t *Transport) readFinal(c *conn, req *http.Request) (*http.Response, error) {
	var got1xx func(int, textproto.MIMEHeader) error
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil {
		got1xx = trace.Got1xxResponse
	}
	for informational := 0; ; informational++ {
		if _, err := c.br.Peek(1); err != nil {
			if informational > 0 {
				// A 1xx came: the request reached the upstream, so it
				// is not sent again.
				return nil, err
			}
			return nil, &idleGone{err}
		}
		resp, err := t.readResponse(c, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 {
			return resp, nil
		}
		if informational == MaxInformational {
			return nil, &LimitError{What: limitInformational, Limit: MaxInformational}
		}
		if got1xx != nil {
			if err := got1xx(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// body returns its connection to the pool once read to the end, and
// closes it when abandoned early.
type body struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	c        *conn
	t        *Transport
	stop     func() bool
	reusable bool
	done     bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: back to the pool after a complete body
// on a kept-alive connection, closed otherwise.
func (b *body) finish(complete bool) {
	b.done = true
	if b.stop() && complete && b.reusable {
		b.t.put(b.c)
		return
	}
	b.c.close()
}

func (t *Transport) get(ctx context.Context, fresh bool) (*conn, bool, error) {
	var expired []*conn
	defer func() {
		// Closed outside the lock: closing a stream may wait on the network.
		for _, c := range expired {
			c.close()
		}
	}()
	t.mu.Lock()
	for len(t.idle) > 0 && !fresh {
		c := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if t.IdleTimeout > 0 && time.Since(c.idleTime) > t.IdleTimeout {
			expired = append(expired, c)
			continue
		}
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	nc, err := t.Dial(ctx)
	if err != nil {
		return nil, false, err
	}
	c := &conn{c: nc, lim: headerLimit{r: nc}}
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.lim)
	c.bw = writers.Get().(*bufio.Writer)
	c.bw.Reset(nc)
	return c, false, nil
}

func (t *Transport) put(c *conn) {
	c.c.SetDeadline(time.Time{})
	if c.br.Buffered() > 0 {
		// Bytes past the response: the upstream broke the protocol.
		c.close()
		return
	}
	t.mu.Lock()
	if t.closed || len(t.idle) >= t.MaxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	c.idleTime = time.Now()
	t.idle = append(t.idle, c)
	if t.IdleTimeout > 0 && t.sweep == nil {
		t.sweep = time.AfterFunc(t.IdleTimeout, t.closeExpired)
	}
	t.mu.Unlock()
	// An idle connection need not keep the buffers a large response
	// grew (multiplexer streams can: up to their window).
	if s, ok := c.c.(interface{ Shrink() }); ok {
		s.Shrink()
	}
}

// closeExpired closes the connections idle for IdleTimeout and sets the
// timer again for the oldest one left. Reuse takes the newest connection,
// so without it older ones would idle on while traffic continues.
func (t *Transport) closeExpired() {
	t.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(t.idle) && now.Sub(t.idle[n].idleTime) >= t.IdleTimeout {
		n++
	}
	expired := append([]*conn(nil), t.idle[:n]...)
	t.idle = append(t.idle[:0], t.idle[n:]...)
	if len(t.idle) > 0 && !t.closed {
		t.sweep.Reset(t.IdleTimeout - now.Sub(t.idle[0].idleTime))
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

func (c *conn) close() {
	c.c.Close()
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.br, c.bw = nil, nil
	}
}

// CloseIdleConnections closes the pooled connections, and the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Close closes the pool for good.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	t.CloseIdleConnections()
}
