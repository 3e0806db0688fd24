package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/tunneltest"
)

// The client serves plain requests (GET, HEAD, OPTIONS without a body) on
// its direct path and everything else through http.Server and a reverse
// proxy. These tests hold the direct path to what the proxy path does.

// TestDirectPathChunkedTrailers: a GET answered chunked with a trailer
// reaches the visitor chunked, trailer included.
func TestDirectPathChunkedTrailers(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			fmt.Fprintf(w, "piece %d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "three")
	})
	resp, err := srv.Visitor().Get(url + "/trailers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "piece 0;piece 1;piece 2;" {
		t.Fatalf("body %q", body)
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("not chunked: length %d, encoding %v", resp.ContentLength, resp.TransferEncoding)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "three" {
		t.Fatalf("trailer X-Sum %q, want three (trailers %v)", got, resp.Trailer)
	}
}

// TestDirectPathHeadAndKeepAlive: HEAD keeps the app's Content-Length and
// sends no body; GET, HEAD, POST and GET again on one visitor connection
// all answer right (the POST hands the stream to the proxy path).
func TestDirectPathHeadAndKeepAlive(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		msg := r.Method + " " + r.URL.Path + " " + string(b)
		w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
		io.WriteString(w, msg)
	})
	addr := srv.PublicAddr()
	host := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	send := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+host+path, strings.NewReader(body))
		if body == "" {
			req.Body = nil
		}
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, b := send("GET", "/a", ""); resp.StatusCode != 200 || b != "GET /a " {
		t.Fatalf("GET: %d %q", resp.StatusCode, b)
	}
	resp, b := send("HEAD", "/b", "")
	if resp.StatusCode != 200 || b != "" || resp.ContentLength != int64(len("HEAD /b ")) {
		t.Fatalf("HEAD: %d %q length %d", resp.StatusCode, b, resp.ContentLength)
	}
	if resp, b := send("POST", "/c", "data"); resp.StatusCode != 200 || b != "POST /c data" {
		t.Fatalf("POST: %d %q", resp.StatusCode, b)
	}
	if resp, b := send("GET", "/d", ""); resp.StatusCode != 200 || b != "GET /d " {
		t.Fatalf("GET after POST: %d %q", resp.StatusCode, b)
	}
}

// TestDirectPathVisitorLeavesWaitingGET: a visitor that gives up on a slow
// GET does not leave the client waiting on the app: the app's request is
// cancelled, as on the proxy path, so abandoned requests hold no
// connection to the app.
func TestDirectPathVisitorLeavesWaitingGET(t *testing.T) {
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(30 * time.Second):
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Visitor().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the app")
	}
	cancel()
	<-errc
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the visitor left, but the app's request was not cancelled within 10 s")
	}
}

// TestDirectPathBodylessStatuses: 304, 204 and a HEAD answered without a
// length leave the visitor's connection (and the stream under it) usable
// for the next request.
func TestDirectPathBodylessStatuses(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, "ok "+r.URL.Path)
		}
	})
	host := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", srv.PublicAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	for _, step := range []struct {
		method, path string
		status       int
		body         string
	}{{"GET", "/304", 304, ""}, {"GET", "/a", 200, "ok /a"}, {"GET", "/204", 204, ""}, {"GET", "/b", 200, "ok /b"}, {"HEAD", "/c", 200, ""}, {"GET", "/d", 200, "ok /d"}} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", step.method, step.path, host)
		resp, err := http.ReadResponse(br, &http.Request{Method: step.method})
		if err != nil {
			t.Fatalf("%s %s: %v", step.method, step.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != step.status || string(b) != step.body {
			t.Fatalf("%s %s: %d %q, want %d %q", step.method, step.path, resp.StatusCode, b, step.status, step.body)
		}
	}
}

// TestDirectPathCloseDelimited: an app that ends its body by closing the
// connection (no length, no chunking) is passed on whole, and the
// visitor's next request still works.
func TestDirectPathCloseDelimited(t *testing.T) {
	srv := tunneltest.StartServer(t)
	appAddr := startRawApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nclosed body %s", req.URL.Path)
	})
	cl := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", "http://"+appAddr))
	url := cl.WaitURL(t, "web")
	vis := srv.Visitor()
	for _, p := range []string{"/one", "/two", "/three"} {
		resp, body, err := tunneltest.Get(vis, url+p)
		if err != nil || resp.StatusCode != 200 || body != "closed body "+p {
			t.Fatalf("%s: %v %v %q", p, err, resp, body)
		}
	}
}

func startRawApp(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}
