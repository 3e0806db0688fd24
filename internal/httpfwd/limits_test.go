package httpfwd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawUpstream is a hostile HTTP server on loopback: it reads each request
// (and its body), lets answer write whatever bytes it likes, and closes
// the connection.
func rawUpstream(t *testing.T, answer func(w io.Writer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				bw := bufio.NewWriterSize(c, 64<<10)
				answer(bw)
				bw.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}

// The attacks: each writes until done or until the reader hangs up.
func hugeHeader(n int) func(io.Writer) {
	return func(w io.Writer) {
		io.WriteString(w, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := []byte(strings.Repeat("a", 64<<10))
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		io.WriteString(w, "\r\nContent-Length: 2\r\n\r\nok")
	}
}

func manyFields(n int) func(io.Writer) {
	return func(w io.Writer) {
		io.WriteString(w, "HTTP/1.1 200 OK\r\n")
		for i := 0; i < n; i++ {
			if _, err := io.WriteString(w, "X: y\r\n"); err != nil {
				return
			}
		}
		io.WriteString(w, "Content-Length: 2\r\n\r\nok")
	}
}

func endlessContinue(w io.Writer) {
	for {
		if _, err := io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return
		}
	}
}

// informationalThenOK sends n 103 responses, then a 200.
func informationalThenOK(n int) func(io.Writer) {
	return func(w io.Writer) {
		for i := 0; i < n; i++ {
			io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
		}
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// limitedTransport is a Transport to addr built as its owners build it:
// the fallback's header byte limit set to the same value.
func limitedTransport(addr string, maxBytes int) *Transport {
	return &Transport{
		Dial:           func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) },
		Fallback:       &http.Transport{MaxResponseHeaderBytes: int64(maxBytes), DisableKeepAlives: true},
		MaxIdle:        4,
		MaxHeaderBytes: maxBytes,
	}
}

// proxyFront serves a ReverseProxy over tr, as both ends of a tunnel do
// (ReverseProxy passes 1xx responses on through a ClientTrace hook), and
// records the errors its ErrorHandler sees.
type proxyFront struct {
	url  string
	mu   sync.Mutex
	errs []error
}

func newProxyFront(t *testing.T, tr *Transport, upstream string) *proxyFront {
	t.Helper()
	f := &proxyFront{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = upstream
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	t.Cleanup(tr.Close)
	f.url = srv.URL
	return f
}

func (f *proxyFront) lastErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs[len(f.errs)-1]
}

// visit sends method to url and returns the final status; the client
// gives up on a header block past 1 MiB (1xx responses included).
func visit(t *testing.T, method, url string) (int, error) {
	t.Helper()
	c := &http.Client{
		Transport: &http.Transport{MaxResponseHeaderBytes: 1 << 20, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("some body")
	}
	req, _ := http.NewRequest(method, url, body)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHostileResponseHeaders: an upstream answering a 30 MB header, 100,000
// header fields or an endless run of 100 Continue makes the request fail
// with 502, on the fast path (GET) and on the fallback (POST), without the
// reading side allocating anything near the size of the attack.
func TestHostileResponseHeaders(t *testing.T) {
	attacks := []struct {
		name   string
		answer func(io.Writer)
	}{
		{"30MB header", hugeHeader(30 << 20)},
		{"100k fields", manyFields(100_000)},
		{"endless 100 Continue", endlessContinue},
	}
	for _, a := range attacks {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(a.name+" "+method, func(t *testing.T) {
				up := rawUpstream(t, a.answer)
				front := newProxyFront(t, limitedTransport(up, DefaultMaxHeaderBytes), up)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				status, err := visit(t, method, front.url)
				runtime.ReadMemStats(&after)
				if err != nil || status != http.StatusBadGateway {
					t.Fatalf("visitor got %d, %v; want 502", status, err)
				}
				perr := front.lastErr()
				if perr == nil {
					t.Fatal("no proxy error recorded")
				}
				// The fallback's own byte limit answers for a huge
				// header on POST; ours everywhere else.
				if !IsLimit(perr) && !strings.Contains(perr.Error(), "exceeded") {
					t.Fatalf("proxy error %v, want a header limit error", perr)
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
					t.Fatalf("%d MiB allocated while refusing the response; want a bounded amount", alloc>>20)
				}
			})
		}
	}
}

// headerBlock is a response whose status line and header fields take
// exactly n bytes, followed by a body of bodyLen bytes.
func headerBlock(n, bodyLen int) string {
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Pad: ", bodyLen)
	pad := n - len(head) - len("\r\n\r\n")
	return head + strings.Repeat("p", pad) + "\r\n\r\n" + strings.Repeat("b", bodyLen)
}

// TestHeaderBytesBoundary: on the fast path a header block of exactly
// MaxHeaderBytes passes and one byte more fails, however much of the body
// arrives with it, and also after a 1xx response read ahead of it.
func TestHeaderBytesBoundary(t *testing.T) {
	const max = 8 << 10
	for _, bodyLen := range []int{0, 100, 40 << 10} {
		for _, early := range []bool{false, true} {
			for _, size := range []int{max, max + 1} {
				t.Run(fmt.Sprintf("body %d early %v size %d", bodyLen, early, size), func(t *testing.T) {
					resp := headerBlock(size, bodyLen)
					if early {
						resp = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + resp
					}
					up := rawUpstream(t, func(w io.Writer) { io.WriteString(w, resp) })
					tr := limitedTransport(up, max)
					defer tr.Close()
					req, _ := http.NewRequest(http.MethodGet, "http://"+up+"/", nil)
					res, err := tr.RoundTrip(req)
					if size > max {
						var le *LimitError
						if !errors.As(err, &le) || le.What != limitBytes || le.Limit != max {
							t.Fatalf("%d-byte header: err %v, want the %d-byte limit", size, err, max)
						}
						return
					}
					if err != nil {
						t.Fatalf("%d-byte header refused: %v", size, err)
					}
					b, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil || len(b) != bodyLen {
						t.Fatalf("body %d bytes, %v; want %d", len(b), err, bodyLen)
					}
				})
			}
		}
	}
}

// TestHeaderFieldsBoundary: MaxHeaderFields fields pass, one more fails,
// on both paths.
func TestHeaderFieldsBoundary(t *testing.T) {
	const max = 50
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for _, n := range []int{max, max + 1} {
			t.Run(fmt.Sprintf("%s %d", method, n), func(t *testing.T) {
				// n-1 fields, and Content-Length.
				up := rawUpstream(t, manyFields(n-1))
				tr := limitedTransport(up, DefaultMaxHeaderBytes)
				tr.MaxHeaderFields = max
				defer tr.Close()
				var body io.Reader
				if method == http.MethodPost {
					body = strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, "http://"+up+"/", body)
				res, err := tr.RoundTrip(req)
				if n > max {
					var le *LimitError
					if !errors.As(err, &le) || le.What != limitFields || le.Limit != max {
						t.Fatalf("%d fields: err %v, want the %d-field limit", n, err, max)
					}
					return
				}
				if err != nil {
					t.Fatalf("%d fields refused: %v", n, err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			})
		}
	}
}

// TestInformationalBoundary: MaxInformational 1xx responses before the
// final one pass, one more fails, on both paths; through a ReverseProxy
// (whose trace hook makes http.Transport reset its byte budget for each
// 1xx) and called directly.
func TestInformationalBoundary(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for _, n := range []int{MaxInformational, MaxInformational + 1} {
			t.Run(fmt.Sprintf("%s %d", method, n), func(t *testing.T) {
				up := rawUpstream(t, informationalThenOK(n))
				front := newProxyFront(t, limitedTransport(up, DefaultMaxHeaderBytes), up)
				status, err := visit(t, method, front.url)
				if err != nil {
					t.Fatal(err)
				}
				if n <= MaxInformational {
					if status != http.StatusOK {
						t.Fatalf("%d 1xx responses: status %d (%v), want 200", n, status, front.lastErr())
					}
					return
				}
				var le *LimitError
				if status != http.StatusBadGateway || !errors.As(front.lastErr(), &le) || le.What != limitInformational {
					t.Fatalf("%d 1xx responses: status %d, error %v; want 502 for the 1xx limit", n, status, front.lastErr())
				}

				tr := limitedTransport(up, DefaultMaxHeaderBytes)
				defer tr.Close()
				var body io.Reader
				if method == http.MethodPost {
					body = strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, "http://"+up+"/", body)
				if _, err := tr.RoundTrip(req); !errors.As(err, &le) || le.What != limitInformational {
					t.Fatalf("direct %s: err %v, want the 1xx limit", method, err)
				}
			})
		}
	}
}

// halfCloser is a connection whose Close only half-closes it, as a yamux
// stream's does: reads go on until the peer stops sending. It counts the
// bytes read after Close and reports the first failed read.
type halfCloser struct {
	net.Conn
	closed    atomic.Bool
	afterward atomic.Int64
	failed    chan struct{}
	once      sync.Once
}

func (c *halfCloser) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.closed.Load() {
		c.afterward.Add(int64(n))
	}
	if err != nil {
		c.once.Do(func() { close(c.failed) })
	}
	return n, err
}

func (c *halfCloser) Close() error {
	c.closed.Store(true)
	return c.Conn.(*net.TCPConn).CloseWrite()
}

// TestCloseReadsStopsTheReadLoop: over connections whose Close is only a
// half-close, http.Transport would keep reading (and parsing) an endless
// run of 1xx responses after giving up on the request; CloseReads makes
// its read loop stop at once.
func TestCloseReadsStopsTheReadLoop(t *testing.T) {
	up := rawUpstream(t, endlessContinue)
	conns := make(chan *halfCloser, 1)
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", up)
		if err != nil {
			return nil, err
		}
		hc := &halfCloser{Conn: c, failed: make(chan struct{})}
		conns <- hc
		return CloseReads(hc), nil
	}
	tr := &Transport{
		Dial:     dial,
		Fallback: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }},
		MaxIdle:  4,
	}
	front := newProxyFront(t, tr, up)
	if status, err := visit(t, http.MethodPost, front.url); err != nil || status != http.StatusBadGateway {
		t.Fatalf("got %d, %v; want 502", status, err)
	}
	hc := <-conns
	t.Cleanup(func() { hc.Conn.Close() })
	select {
	case <-hc.failed:
	case <-time.After(20 * time.Second):
		t.Fatal("the read loop is still reading the closed connection")
	}
	if n := hc.afterward.Load(); n > 1<<20 {
		t.Fatalf("%d bytes read after Close", n)
	}
}
