package client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"sync"
	"time"
)

// The direct path serves a stream's plain requests (GET, HEAD and OPTIONS
// without a body, an upgrade or Expect) without http.Server and a second
// ReverseProxy: the request is parsed once with http.ReadRequest, sent to
// the app by httpfwd.Transport (pooled keep-alive connections and the
// limits on the app's response headers, 502 past them) and the response
// written back with its own framing. The first request on a stream that is
// anything else hands the stream, with the bytes already read, to the
// http.Server path for the rest of its life. Profiles put the client's
// http.Server and second proxy at about a third of its CPU per request at
// one connection (docs/design.md).
//
// The inspector needs the parsed exchange, so with it on every stream
// takes the http.Server path; so does an https:// app, and an app the
// tunnel speaks HTTP/2 to (h2c): the direct path speaks HTTP/1.1.
// PORTHOLE_CLIENT_FORWARD=proxy forces the http.Server path, so the
// bench can measure both in one run.

var forceProxyPath = os.Getenv("PORTHOLE_CLIENT_FORWARD") == "proxy"

// directOK reports whether this forwarder's streams may take the direct
// path.
func (f *httpForwarder) directOK() bool {
	_, h2 := f.up.(*upstream)
	return !forceProxyPath && f.ins == nil && f.target.Scheme == "http" && !h2
}

var streamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
var streamWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// serveStream serves the requests on st until it closes or a request
// needs the http.Server path.
func (f *httpForwarder) serveStream(st net.Conn) {
	if !f.directOK() {
		f.ln.push(st)
		return
	}
	// Between requests a stream holds no buffers: the server keeps up
	// to its idle_streams of them open per tunnel, and 48 KiB of buffers
	// each would make an idle client grow with every visitor it had.
	// The next request's first byte is waited for with a one-byte read.
	var br *bufio.Reader
	src := &firstByteReader{r: st}
	handed := false
	defer func() {
		if br != nil && !handed {
			br.Reset(nil)
			streamReaders.Put(br)
		}
		if !handed {
			st.Close()
		}
	}()
	for {
		if br != nil && br.Buffered() == 0 {
			br.Reset(nil)
			streamReaders.Put(br)
			br = nil
		}
		if br == nil {
			if s, ok := st.(interface{ Shrink() }); ok {
				s.Shrink()
			}
			if _, err := io.ReadFull(st, src.first[:]); err != nil {
				return
			}
			src.pending = true
			br = streamReaders.Get().(*bufio.Reader)
			br.Reset(src)
		}
		if !plainRequest(br) {
			// The bytes read so far go with the stream.
			handed = true
			f.ln.push(&bufferedConn{Conn: st, r: br})
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		// A visitor who leaves makes the server close the stream: that
		// cancels the request to the app, as http.Server would.
		var stop func() = func() {}
		if pd, ok := st.(interface{ OnPeerDone(func()) func() }); ok {
			ctx, cancel := context.WithCancel(req.Context())
			req = req.WithContext(ctx)
			undo := pd.OnPeerDone(cancel)
			stop = func() { undo(); cancel() }
		}
		bw := streamWriters.Get().(*bufio.Writer)
		bw.Reset(st)
		ok := f.roundTripDirect(bw, req)
		bw.Reset(nil)
		streamWriters.Put(bw)
		stop()
		if !ok {
			return
		}
	}
}

// roundTripDirect forwards one plain request and writes the response to
// bw; it reports whether the stream may carry another request.
func (f *httpForwarder) roundTripDirect(bw *bufio.Writer, req *http.Request) bool {
	start := time.Now()
	f.t.requests.Add(1)
	f.t.openConns.Add(1)
	defer f.t.openConns.Add(-1)
	req.RemoteAddr = streamAddr{}.String()
	in := req.Clone(req.Context())
	req.URL.Scheme = f.target.Scheme
	req.URL.Host = f.target.Host
	req.RequestURI = ""
	switch h := f.t.cfg.HostHeader; h {
	case "":
	case "rewrite":
		req.Host = f.target.Host
	default:
		req.Host = h
	}
	// As ReverseProxy does: no Go default User-Agent where none came.
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""}
	}
	var n int64
	status := 0
	reuse := !req.Close
	// The app's 1xx responses (103 Early Hints) go on as they come, as
	// ReverseProxy passes them on; httpfwd.Transport bounds their count
	// and size.
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { return writeInformational(bw, code, http.Header(h)) },
	})
	resp, err := f.tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		rw := &bufferedResponse{header: http.Header{}}
		f.proxyError(rw, in, err)
		status = rw.status
		resp = rw.response(req)
	} else {
		status = resp.StatusCode
		removeHopHeaders(resp.Header)
		if resp.ContentLength < 0 {
			// A body delimited by the end of the app's connection goes on
			// chunked, as http.Server would send it, and the stream stays.
			resp.TransferEncoding = []string{"chunked"}
			resp.Close = false
			// Trailers the app did not announce (no Trailer field) are
			// read into resp.Trailer when the body ends; Write sends the
			// map it holds when it starts, so it must exist by then.
			if resp.Trailer == nil {
				resp.Trailer = http.Header{}
			}
		}
		if resp.Close {
			reuse = false
		}
	}
	body := resp.Body
	cw := &countingBody{r: body}
	if resp.ContentLength < 0 {
		// Unknown length (chunked, server-sent events): each piece the
		// app sends goes on at once.
		cw.flush = bw
	}
	resp.Body = cw
	werr := resp.Write(bw)
	if werr == nil {
		werr = bw.Flush()
	}
	body.Close()
	n = cw.n
	if status >= 500 {
		f.t.errors.Add(1)
	}
	f.t.bytesOut.Add(n)
	f.log.Info("request", "method", in.Method, "path", in.URL.Path, "status", status,
		"bytes", n, "duration", time.Since(start).Round(time.Microsecond).String(),
		"request_id", in.Header.Get("X-Request-Id"), "aborted", werr != nil)
	return werr == nil && reuse
}

// writeInformational writes a 1xx response to bw and sends it.
func writeInformational(bw *bufio.Writer, code int, h http.Header) error {
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	if err := h.Write(bw); err != nil {
		return err
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

// plainRequest reports whether the next request on br is one the direct
// path serves: its whole header is buffered, its method is GET, HEAD or
// OPTIONS, and it has no body, upgrade or Expect.
func plainRequest(br *bufio.Reader) bool {
	if _, err := br.Peek(1); err != nil {
		return true // ReadRequest reports the end of the stream
	}
	b, _ := br.Peek(br.Buffered())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return false
	}
	b = b[:end+2]
	if !bytes.HasPrefix(b, []byte("GET ")) && !bytes.HasPrefix(b, []byte("HEAD ")) && !bytes.HasPrefix(b, []byte("OPTIONS ")) {
		return false
	}
	for _, h := range [...]string{"\ncontent-length:", "\ntransfer-encoding:", "\nupgrade:", "\nexpect:", "\nconnection:"} {
		if containsFold(b, h) {
			return false
		}
	}
	return true
}

// containsFold reports whether b holds the lower-case ASCII needle in any
// case.
func containsFold(b []byte, needle string) bool {
	for i := 0; i+len(needle) <= len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		j := 1
		for ; j < len(needle); j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}

// hopHeaders are the hop-by-hop response headers ReverseProxy drops
// (RFC 9110 section 7.6.1); this side writes its own framing.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range bytes.Split([]byte(v), []byte(",")) {
			if k := string(bytes.TrimSpace(name)); k != "" {
				h.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// countingBody counts a response body's bytes and, for bodies of unknown
// length, flushes each piece to the stream.
type countingBody struct {
	r     io.Reader
	n     int64
	flush *bufio.Writer
}

func (c *countingBody) Read(p []byte) (int, error) {
	if c.flush != nil && c.flush.Buffered() > 0 {
		if err := c.flush.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingBody) Close() error { return nil }

// bufferedResponse collects proxyError's answer.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) response(req *http.Request) *http.Response {
	if b.status == 0 {
		b.status = http.StatusBadGateway
	}
	return &http.Response{StatusCode: b.status, ProtoMajor: 1, ProtoMinor: 1, Header: b.header,
		ContentLength: int64(b.body.Len()), Body: io.NopCloser(&b.body), Request: req}
}

// firstByteReader reads the byte an idle stream waited for, then the
// stream: in one Read, so that a request's header arrives whole in the
// reader's buffer (plainRequest looks for its end there).
type firstByteReader struct {
	r       io.Reader
	first   [1]byte
	pending bool
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	if !f.pending || len(p) == 0 {
		return f.r.Read(p)
	}
	f.pending = false
	p[0] = f.first[0]
	n, err := f.r.Read(p[1:])
	return n + 1, err
}

// bufferedConn is a stream whose first bytes sit in r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r.Reset(nil)
		streamReaders.Put(c.r)
		c.r = nil
	}
	return c.Conn.Read(p)
}

// Shrink passes on to the stream.
func (c *bufferedConn) Shrink() {
	if s, ok := c.Conn.(interface{ Shrink() }); ok {
		s.Shrink()
	}
}
