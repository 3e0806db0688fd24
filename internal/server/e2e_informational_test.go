package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// informationalPaths are the ways a request crosses the tunnel, each
// with its own reading of the app's 1xx responses: the client's direct
// path and the server's fast path (GET), http.Transport on both sides
// (POST), the client's http.Server path with httpfwd.Transport (GET with
// the inspector on), and HTTP/2 to an h2c app (GET and POST).
type informationalPath struct {
	name      string
	method    string
	inspector bool
	h2c       bool
}

var informationalPaths = []informationalPath{
	{"direct GET", http.MethodGet, false, false},
	{"fallback POST", http.MethodPost, false, false},
	{"proxy GET", http.MethodGet, true, false},
	{"proxy POST", http.MethodPost, true, false},
	{"h2c GET", http.MethodGet, false, true},
	{"h2c POST", http.MethodPost, false, true},
}

// startInformationalClient starts a client for p's tunnel to app.
func startInformationalClient(t *testing.T, srv *tunneltest.Server, p informationalPath, name, app string) string {
	t.Helper()
	spec := tunneltest.HTTP(name, app)
	if p.h2c {
		spec.Config.UpstreamProtocol = "h2c"
	}
	var deps client.Deps
	if p.inspector {
		st, err := inspect.NewStore(inspect.DefaultConfig(), time.Now)
		if err != nil {
			t.Fatal(err)
		}
		deps.Inspector = st
	}
	c := tunneltest.StartClientDeps(t, tunneltest.ClientConfig(srv.TunnelURL()), deps, spec)
	return c.WaitURL(t, name)
}

// seen1xx is what a visitor saw of the informational responses.
type seen1xx struct {
	mu    sync.Mutex
	codes []int
	links []string
}

func (s *seen1xx) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.codes = append(s.codes, code)
		s.links = append(s.links, strings.Join(h.Values("Link"), ","))
		return nil
	}}
}

// visit1xx sends method to u and returns the final response (body read)
// and the 1xx responses seen before it.
func visit1xx(t *testing.T, c *http.Client, method, u string) (*http.Response, string, *seen1xx) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("a request body")
	}
	s := &seen1xx{}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), s.trace()))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), s
}

// earlyHints answers with two 103 Early Hints, then 200 "ok".
func earlyHints(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Link", "</a.css>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	w.Header().Set("Link", "</b.js>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	w.Header().Del("Link")
	io.WriteString(w, "ok")
}

// TestEarlyHintsReachVisitor: an app's 103 Early Hints reach the visitor
// before the final response on every path, as they do through
// httputil.ReverseProxy in front of the app directly (the fast paths
// dropped them, so a page's GET never got its hints).
func TestEarlyHintsReachVisitor(t *testing.T) {
	h1 := startApp(t, earlyHints)
	h2 := startH2CApp(t, http.HandlerFunc(earlyHints))
	direct := httptest.NewServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: strings.TrimPrefix(h1.URL, "http://")}))
	t.Cleanup(direct.Close)
	_, _, want := visit1xx(t, http.DefaultClient, http.MethodGet, direct.URL)
	if !slices.Equal(want.codes, []int{103, 103}) || !slices.Equal(want.links, []string{"</a.css>; rel=preload", "</b.js>; rel=preload"}) {
		t.Fatalf("through ReverseProxy directly: %v %q", want.codes, want.links)
	}

	srv := tunneltest.StartServer(t, func(c *server.Config) { c.HTTP.H2C = true })
	visitors := map[string]*http.Client{"http1": srv.Visitor(), "h2c": h2cVisitor(t, srv.PublicAddr())}
	for i, p := range informationalPaths {
		t.Run(p.name, func(t *testing.T) {
			app := h1.URL
			if p.h2c {
				app = "http://" + h2
			}
			u := startInformationalClient(t, srv, p, fmt.Sprintf("hints%d", i), app)
			for vname, vc := range visitors {
				resp, body, got := visit1xx(t, vc, p.method, u)
				if resp.StatusCode != http.StatusOK || body != "ok" {
					t.Fatalf("%s visitor: %d %q, want 200 ok", vname, resp.StatusCode, body)
				}
				if !slices.Equal(got.codes, want.codes) || !slices.Equal(got.links, want.links) {
					t.Fatalf("%s visitor saw 1xx %v %q, want %v %q as through ReverseProxy", vname, got.codes, got.links, want.codes, want.links)
				}
			}
		})
	}
}

// rawInformationalApp is an HTTP/1.1 app on loopback that answers each
// request with 1xx responses from next until next returns "" or the
// reader hangs up, then 200 "ok". It counts the 1xx responses it wrote.
func rawInformationalApp(t *testing.T, next func(i int) string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				bw := bufio.NewWriterSize(c, 64<<10)
				for i := 0; ; i++ {
					r := next(i)
					if r == "" {
						break
					}
					if _, err := io.WriteString(bw, r); err != nil {
						return
					}
					if bw.Flush() != nil {
						return
					}
					sent.Add(1)
				}
				io.WriteString(bw, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				bw.Flush()
			})
		}
	})
	return "http://" + ln.Addr().String(), &sent
}

// TestEndlessInformationalResponses: an app that answers with 1xx
// responses without end (103 Early Hints, 100 Continue) gets the visitor
// a 502 from the client itself on every path, HTTP/2 apps included,
// after at most httpfwd.MaxInformational of them; the app's connection
// is closed, and the server serves on.
func TestEndlessInformationalResponses(t *testing.T) {
	hints, _ := rawInformationalApp(t, func(i int) string {
		if i%2 == 0 {
			return "HTTP/1.1 100 Continue\r\n\r\n"
		}
		return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	})
	var h2Sent, h2Ended atomic.Int64
	h2 := startH2CApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer h2Ended.Add(1)
		w.Header().Set("Link", "</a.css>; rel=preload")
		for i := 0; i < 1_000_000 && r.Context().Err() == nil; i++ {
			w.WriteHeader(http.StatusEarlyHints)
			h2Sent.Add(1)
		}
	}))
	srv := tunneltest.StartServer(t)
	for i, p := range informationalPaths {
		t.Run(p.name, func(t *testing.T) {
			app := hints
			if p.h2c {
				app = "http://" + h2
			}
			u := startInformationalClient(t, srv, p, fmt.Sprintf("endless%d", i), app)
			resp, body, got := visit1xx(t, srv.Visitor(), p.method, u)
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Porthole-Error") != "local_app_error" {
				t.Fatalf("%d %s %q, want the client's 502 (local_app_error)", resp.StatusCode, resp.Header.Get("X-Porthole-Error"), body)
			}
			if !strings.Contains(body, "informational (1xx)") {
				t.Fatalf("502 body %q does not name the 1xx limit", body)
			}
			if n := len(got.codes); n > httpfwd.MaxInformational+1 {
				t.Fatalf("visitor saw %d 1xx responses, want at most %d", n, httpfwd.MaxInformational+1)
			}
		})
	}
	// The HTTP/2 app's handler saw its request cancelled each time.
	deadline := time.Now().Add(10 * time.Second)
	for h2Ended.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h2Ended.Load() < 2 || h2Sent.Load() >= 2_000_000 {
		t.Fatalf("h2c app: %d handlers ended, %d 1xx sent; want both cancelled early", h2Ended.Load(), h2Sent.Load())
	}
	stillServes(t, srv)
}

// TestLargeInformationalResponses: a 1xx response whose header block is
// over the client's limit on the app (1 MiB) gets the visitor the
// client's 502; one within it but over the server's limit on what the
// client passes on (64 KiB by default) gets the server's 502.
func TestLargeInformationalResponses(t *testing.T) {
	huge, _ := rawInformationalApp(t, func(i int) string {
		if i > 0 {
			return ""
		}
		return "HTTP/1.1 103 Early Hints\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"
	})
	big, _ := rawInformationalApp(t, func(i int) string {
		if i > 0 {
			return ""
		}
		return "HTTP/1.1 103 Early Hints\r\nX-Big: " + strings.Repeat("b", 200<<10) + "\r\n\r\n"
	})
	h2 := startH2CApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The header map is left alone after WriteHeader(103): once the
		// client resets the stream, net/http's HTTP/2 server may still be
		// encoding that block on another goroutine.
		w.Header().Set("X-Big", strings.Repeat("a", 2<<20))
		w.WriteHeader(http.StatusEarlyHints)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	srv := tunneltest.StartServer(t)
	for i, p := range informationalPaths {
		t.Run(p.name, func(t *testing.T) {
			cases := []struct{ app, side string }{{huge, "local_app_error"}, {big, "tunnel_error"}}
			if p.h2c {
				cases = cases[:1]
				cases[0].app = "http://" + h2
			}
			for j, tc := range cases {
				u := startInformationalClient(t, srv, p, fmt.Sprintf("large%d-%d", i, j), tc.app)
				resp, body, _ := visit1xx(t, srv.Visitor(), p.method, u)
				if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Porthole-Error") != tc.side {
					t.Fatalf("%s: %d %s %q, want 502 %s", tc.app, resp.StatusCode, resp.Header.Get("X-Porthole-Error"), body, tc.side)
				}
			}
		})
	}
	stillServes(t, srv)
}
