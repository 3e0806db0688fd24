package server_test

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/tunneltest"
)

// unannouncedTrailers answers chunked with one announced trailer and one
// it did not announce (http.TrailerPrefix), as an HTTP/1.1 app sends an
// undeclared chunked trailer and an HTTP/2 app a trailer HEADERS frame
// with fields its header block did not name.
func unannouncedTrailers(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Trailer", "X-Announced")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "body")
	w.(http.Flusher).Flush()
	w.Header().Set("X-Announced", "yes")
	w.Header().Set(http.TrailerPrefix+"X-Unannounced", "also")
}

// rawUndeclaredTrailerApp answers every request with a chunked body and
// a trailer section its header did not announce at all (no Trailer
// field), written byte for byte.
func rawUndeclaredTrailerApp(t *testing.T, trailer func(io.Writer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					bw := bufio.NewWriterSize(c, 64<<10)
					io.WriteString(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n")
					trailer(bw)
					io.WriteString(bw, "\r\n")
					if bw.Flush() != nil {
						return
					}
				}
			})
		}
	})
	return "http://" + ln.Addr().String()
}

// trailersOf sends method to u and returns the body and the trailers.
func trailersOf(t *testing.T, c *http.Client, method, u string) (string, http.Header, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("a request body")
	}
	req, _ := http.NewRequest(method, u, body)
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), resp.Trailer, err
}

// TestUnannouncedTrailersReachVisitor: trailers an app sends without
// announcing them reach the visitor through the tunnel on every path,
// as they do through httputil.ReverseProxy in front of the app directly
// (the client's direct path dropped them on GETs).
func TestUnannouncedTrailersReachVisitor(t *testing.T) {
	h1 := startApp(t, unannouncedTrailers).URL
	h2 := "http://" + startH2CApp(t, http.HandlerFunc(unannouncedTrailers))
	raw := rawUndeclaredTrailerApp(t, func(w io.Writer) { io.WriteString(w, "X-Raw: undeclared\r\n") })

	reference := func(app string) http.Header {
		t.Helper()
		u, _ := url.Parse(app)
		direct := httptest.NewServer(httputil.NewSingleHostReverseProxy(u))
		t.Cleanup(direct.Close)
		_, tr, err := trailersOf(t, http.DefaultClient, http.MethodGet, direct.URL)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	wantGo, wantRaw := reference(h1), reference(raw)
	if wantGo.Get("X-Announced") != "yes" || wantGo.Get("X-Unannounced") != "also" || wantRaw.Get("X-Raw") != "undeclared" {
		t.Fatalf("through ReverseProxy directly: %v, %v", wantGo, wantRaw)
	}

	srv := tunneltest.StartServer(t)
	for i, p := range informationalPaths {
		t.Run(p.name, func(t *testing.T) {
			apps := []struct {
				url  string
				want http.Header
			}{{h1, wantGo}, {raw, wantRaw}}
			if p.h2c {
				apps = apps[:1]
				apps[0].url = h2
			}
			for j, app := range apps {
				u := startInformationalClient(t, srv, p, fmt.Sprintf("trailers%d-%d", i, j), app.url)
				body, tr, err := trailersOf(t, srv.Visitor(), p.method, u)
				if err != nil || body != "body" {
					t.Fatalf("%s: %q %v", app.url, body, err)
				}
				if !maps.EqualFunc(tr, app.want, func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }) {
					t.Fatalf("%s: visitor got trailers %v, want %v as through ReverseProxy", app.url, tr, app.want)
				}
			}
		})
	}
}

// TestHugeTrailers: an app that sends megabytes of trailers (one 4 MiB
// field over HTTP/1.1, 100,000 small ones, a 2 MiB field over HTTP/2)
// gets its response cut off after the body: no trailer reaches the
// visitor, memory stays bounded, and the server serves on.
func TestHugeTrailers(t *testing.T) {
	big := rawUndeclaredTrailerApp(t, func(w io.Writer) {
		io.WriteString(w, "X-Big: ")
		chunk := strings.Repeat("t", 64<<10)
		for range 64 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, "\r\n")
	})
	many := rawUndeclaredTrailerApp(t, func(w io.Writer) {
		for range 100_000 {
			if _, err := io.WriteString(w, "X: y\r\n"); err != nil {
				return
			}
		}
	})
	h2 := "http://" + startH2CApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set(http.TrailerPrefix+"X-Big", strings.Repeat("t", 2<<20))
	}))
	srv := tunneltest.StartServer(t)
	for i, p := range informationalPaths {
		t.Run(p.name, func(t *testing.T) {
			apps := []string{big, many}
			if p.h2c {
				apps = []string{h2}
			}
			for j, app := range apps {
				u := startInformationalClient(t, srv, p, fmt.Sprintf("huge%d-%d", i, j), app)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				_, tr, err := trailersOf(t, srv.Visitor(), p.method, u)
				runtime.GC()
				runtime.ReadMemStats(&after)
				if err == nil || len(tr) != 0 {
					t.Fatalf("%s: trailers %d, error %v; want the response cut off", app, len(tr), err)
				}
				if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 16<<20 {
					t.Fatalf("%s: heap in use grew by %d MiB", app, grow>>20)
				}
			}
		})
	}
	stillServes(t, srv)
}
