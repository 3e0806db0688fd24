package httpfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
)

// Limits on what an upstream may answer, so that a hostile or broken one
// (a local app behind a client, or a client behind the server) cannot make
// the reading side hold memory without bound or wait forever.
const (
	// DefaultMaxHeaderBytes bounds a response's header block (status line
	// and fields) when Transport.MaxHeaderBytes is 0: the server's
	// default for visitors' request headers.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaderFields bounds a response's header fields when
	// Transport.MaxHeaderFields is 0.
	DefaultMaxHeaderFields = 1000
	// MaxInformational is how many 1xx responses may come before the
	// final one (a 100 Continue and a few 103 Early Hints are normal).
	MaxInformational = 10
)

// LimitError is the error of a request whose response broke one of the
// limits above. Nothing of that response is passed on.
type LimitError struct {
	// What names the limit: "header bytes", "header fields" or
	// "informational responses".
	What  string
	Limit int
}

func (e *LimitError) Error() string {
	switch e.What {
	case limitBytes:
		return fmt.Sprintf("response header block larger than the limit of %d bytes", e.Limit)
	case limitFields:
		return fmt.Sprintf("response header with more than the limit of %d fields", e.Limit)
	default:
		return fmt.Sprintf("more than %d informational (1xx) responses before the final one", e.Limit)
	}
}

const (
	limitBytes         = "header bytes"
	limitFields        = "header fields"
	limitInformational = "informational responses"
)

// IsLimit reports whether err is a *LimitError.
func IsLimit(err error) bool {
	var le *LimitError
	return errors.As(err, &le)
}

func (t *Transport) maxHeaderBytes() int {
	if t.MaxHeaderBytes > 0 {
		return t.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (t *Transport) maxHeaderFields() int {
	if t.MaxHeaderFields > 0 {
		return t.MaxHeaderFields
	}
	return DefaultMaxHeaderFields
}

// fieldCount is the number of header lines h was read from.
func fieldCount(h map[string][]string) int {
	n := 0
	for _, v := range h {
		n += len(v)
	}
	return n
}

// errHeaderLimit is what headerLimit's Read returns once the budget is
// spent; readResponse turns it into a *LimitError.
var errHeaderLimit = errors.New("response header limit reached")

// headerLimit sits between a connection and its bufio.Reader. While a
// response's header block is read it passes at most n bytes; otherwise
// it passes everything. A single header line of any length then costs at
// most the budget, not the line: textproto keeps a whole line in memory.
type headerLimit struct {
	r    io.Reader
	on   bool
	n    int // bytes left while on
	read int // bytes passed while on
	hit  bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if !l.on {
		return l.r.Read(p)
	}
	if l.n <= 0 {
		l.hit = true
		return 0, errHeaderLimit
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= n
	l.read += n
	return n, err
}

// readResponse reads one response's status line and header from c within
// the transport's limits. Bytes already buffered count against the budget,
// so the block is held to exactly MaxHeaderBytes: reads stop once the
// buffered and read bytes together reach it, and a block that fits is
// whole by then.
func (t *Transport) readResponse(c *conn, req *http.Request) (*http.Response, error) {
	max := t.maxHeaderBytes()
	start := c.br.Buffered()
	c.lim.on, c.lim.n, c.lim.read, c.lim.hit = true, max-start, 0, false
	resp, err := http.ReadResponse(c.br, req)
	c.lim.on = false
	if err != nil {
		if c.lim.hit {
			return nil, &LimitError{What: limitBytes, Limit: max}
		}
		return nil, err
	}
	if start+c.lim.read-c.br.Buffered() > max {
		// Only possible when more than the budget was already buffered.
		return nil, &LimitError{What: limitBytes, Limit: max}
	}
	if n := t.maxHeaderFields(); fieldCount(resp.Header) > n {
		return nil, &LimitError{What: limitFields, Limit: n}
	}
	return resp, nil
}

// fallback hands req to t.Fallback with the same limits. http.Transport
// bounds header bytes itself (MaxResponseHeaderBytes, which its owner
// sets), but neither the count of fields nor that of 1xx responses: and
// when a ClientTrace has a Got1xxResponse hook, as httputil.ReverseProxy
// always sets to pass 1xx responses on, it even resets its byte budget
// for each of them, so an endless run of them never ends the request.
func (t *Transport) fallback(req *http.Request) (*http.Response, error) {
	return roundTripLimited(t.Fallback, req, t.maxHeaderFields())
}

// LimitInformational wraps rt, an http.Transport to an upstream, with the
// limits Transport applies to its fallback: at most MaxInformational 1xx
// responses before the final one, and at most maxFields header fields in
// each response (0: DefaultMaxHeaderFields). It is for a round-tripper
// that does not go through Transport, such as one speaking HTTP/2, whose
// client also resets no budget but counts no 1xx responses once a
// Got1xxResponse hook is set.
func LimitInformational(rt http.RoundTripper, maxFields int) http.RoundTripper {
	if maxFields <= 0 {
		maxFields = DefaultMaxHeaderFields
	}
	return &limited{rt: rt, fields: maxFields}
}

type limited struct {
	rt     http.RoundTripper
	fields int
}

func (l *limited) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTripLimited(l.rt, req, l.fields)
}

// CloseIdleConnections passes on to the wrapped round-tripper.
func (l *limited) CloseIdleConnections() {
	if ci, ok := l.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// roundTripLimited sends req on rt within the limits. A hook of ours
// counts the 1xx responses and cancels the request past the limit.
func roundTripLimited(rt http.RoundTripper, req *http.Request, fields int) (*http.Response, error) {
	g := &informational{max: MaxInformational, fields: fields}
	// The context is left to end with the request's own: cancelling it
	// on return would cut the body being streamed.
	ctx, cancel := context.WithCancelCause(req.Context())
	g.cancel = cancel
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got1xxResponse: g.got})
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if lerr := g.failed(); lerr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, lerr
	}
	if err != nil {
		return nil, err
	}
	if fieldCount(resp.Header) > fields {
		resp.Body.Close()
		return nil, &LimitError{What: limitFields, Limit: fields}
	}
	return resp, nil
}

// informational counts the 1xx responses of one request on the fallback.
type informational struct {
	max, fields int
	cancel      context.CancelCauseFunc

	mu  sync.Mutex
	n   int
	err error
}

// got runs on http.Transport's read loop for each 1xx response, before
// hooks set by the caller (httptrace calls the newest first); its result
// is not used, so a breach cancels the request instead.
func (g *informational) got(_ int, h textproto.MIMEHeader) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	switch {
	case g.err != nil:
	case g.n > g.max:
		g.err = &LimitError{What: limitInformational, Limit: g.max}
	case fieldCount(h) > g.fields:
		g.err = &LimitError{What: limitFields, Limit: g.fields}
	}
	if g.err != nil {
		g.cancel(g.err)
	}
	return g.err
}

func (g *informational) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
