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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a real HTTP server counting the connections it accepts.
func upstream(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// recordingFallback counts the requests handed to it.
type recordingFallback struct {
	http.Transport
	n atomic.Int64
}

func (f *recordingFallback) RoundTrip(r *http.Request) (*http.Response, error) {
	f.n.Add(1)
	return f.Transport.RoundTrip(r)
}

func newTransport(srv *httptest.Server) (*Transport, *recordingFallback) {
	addr := srv.Listener.Addr().String()
	fb := &recordingFallback{}
	tr := &Transport{
		Dial:     func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) },
		Fallback: fb,
		MaxIdle:  4,
	}
	return tr, fb
}

func get(t *testing.T, tr http.RoundTripper, url, method string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(b)
}

func TestFastPathReusesOneConnection(t *testing.T) {
	srv, conns := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write([]byte("part1 "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})
	tr, fb := newTransport(srv)
	defer tr.Close()
	for i := 0; i < 20; i++ {
		if _, body := get(t, tr, srv.URL+"/a", http.MethodGet); body != "GET /a" {
			t.Fatalf("body %q", body)
		}
	}
	if _, body := get(t, tr, srv.URL+"/chunked", http.MethodGet); body != "part1 part2" {
		t.Fatalf("chunked body %q", body)
	}
	if resp, body := get(t, tr, srv.URL+"/h", http.MethodHead); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for sequential requests, want 1 (kept alive)", n)
	}
	if n := fb.n.Load(); n != 0 {
		t.Fatalf("%d requests took the fallback", n)
	}
}

func TestBodiesAndUpgradesTakeTheFallback(t *testing.T) {
	srv, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", r.Method, len(b))
	})
	tr, fb := newTransport(srv)
	defer tr.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("hello"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 5" {
		t.Fatalf("POST body %q", b)
	}
	up, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	up.Header.Set("Upgrade", "websocket")
	if resp, err := tr.RoundTrip(up); err == nil {
		resp.Body.Close()
	}
	del, _ := http.NewRequest(http.MethodDelete, srv.URL, nil)
	if resp, err := tr.RoundTrip(del); err == nil {
		resp.Body.Close()
	}
	if n := fb.n.Load(); n != 3 {
		t.Fatalf("fallback got %d requests, want 3 (a body, an upgrade, a DELETE)", n)
	}
}

func TestInformationalResponsesAreSkipped(t *testing.T) {
	srv, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Write([]byte("final"))
	})
	tr, _ := newTransport(srv)
	defer tr.Close()
	resp, body := get(t, tr, srv.URL, http.MethodGet)
	if resp.StatusCode != 200 || body != "final" {
		t.Fatalf("got %d %q, want the final 200", resp.StatusCode, body)
	}
}

func TestAbandonedBodyClosesTheConnection(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv, conns := upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	tr, _ := newTransport(srv)
	defer tr.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close() // unread bytes remain: the connection cannot be reused
	if _, body := get(t, tr, srv.URL, http.MethodGet); len(body) != len(big) {
		t.Fatalf("second body %d bytes", len(body))
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the abandoned one closed, not reused)", n)
	}
}

func TestConnectionCloseIsNotReused(t *testing.T) {
	srv, conns := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	tr, _ := newTransport(srv)
	defer tr.Close()
	get(t, tr, srv.URL, http.MethodGet)
	get(t, tr, srv.URL, http.MethodGet)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after two 'Connection: close' answers, want 2", n)
	}
}

// TestIdleConnectionClosedByUpstream: a kept-alive connection the upstream
// closed while idle is replaced, and the request still succeeds.
func TestIdleConnectionClosedByUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				served.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				_ = req
				// Closes after one response, like a server with a short
				// keep-alive timeout.
			}()
		}
	}()
	tr := &Transport{
		Dial:     func(ctx context.Context) (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) },
		Fallback: http.DefaultTransport,
		MaxIdle:  4,
	}
	defer tr.Close()
	url := "http://" + ln.Addr().String() + "/"
	for i := 0; i < 3; i++ {
		if _, body := get(t, tr, url, http.MethodGet); body != "ok" {
			t.Fatalf("request %d: body %q", i, body)
		}
		time.Sleep(20 * time.Millisecond) // let the upstream's close arrive
	}
	if n := served.Load(); n != 3 {
		t.Fatalf("upstream served %d requests, want 3", n)
	}
	wg.Wait()
}

func TestCancelUnblocksAWaitingRequest(t *testing.T) {
	release := make(chan struct{})
	srv, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	tr, _ := newTransport(srv)
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request stayed blocked")
	}
}

// TestIdleConnectionsExpire: connections idle longer than IdleTimeout are
// closed by the pool itself, also those below the one being reused.
func TestIdleConnectionsExpire(t *testing.T) {
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr, _ := newTransport(srv)
	tr.MaxIdle = 16
	tr.IdleTimeout = 200 * time.Millisecond
	defer tr.Close()
	// Eight at once open eight connections.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, tr, srv.URL, http.MethodGet)
		}()
	}
	wg.Wait()
	// Then one at a time keeps reusing the newest: the others idle on.
	for deadline := time.Now().Add(600 * time.Millisecond); time.Now().Before(deadline); {
		get(t, tr, srv.URL, http.MethodGet)
	}
	for deadline := time.Now().Add(5 * time.Second); open.Load() > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream connections still open; the idle ones should have expired", open.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // traffic stopped: the last one expires too
	if n := open.Load(); n != 0 {
		t.Fatalf("%d connections open after traffic stopped for twice the idle timeout", n)
	}
}
