package client_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/tunneltest"
)

// The direct path (plain requests parsed once, no second proxy) and the
// hand-over to the http.Server path must both frame responses right, so
// that one keep-alive visitor connection carries a mix of requests.
func TestDirectPathMixedRequestsOnOneConnection(t *testing.T) {
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/plain":
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-App", "yes")
			io.WriteString(w, "hello")
		case "/close":
			// A response delimited by the end of the connection.
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			brw.WriteString("HTTP/1.1 200 OK\r\nX-App: close\r\n\r\nuntil-the-end")
			brw.Flush()
			c.Close()
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "data: two\n\n")
		}
	}))
	t.Cleanup(app.Close)
	srv := tunneltest.StartServer(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitOK(t, srv, url+"/plain", "hello")
	vis := srv.Visitor()

	check := func(method, path, body, want string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, nil)
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		resp, err := vis.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("%s %s: %d %q %v, want 200 %q", method, path, resp.StatusCode, got, err, want)
		}
		return resp
	}
	for i := 0; i < 3; i++ {
		resp := check("GET", "/plain", "", "hello")
		if resp.Header.Get("X-App") != "yes" || resp.Header.Get("Keep-Alive") != "" {
			t.Fatalf("headers %v: want X-App and no hop-by-hop Keep-Alive", resp.Header)
		}
		if resp := check("HEAD", "/plain", "", ""); resp.ContentLength != 5 {
			t.Fatalf("HEAD: Content-Length %d, want 5", resp.ContentLength)
		}
		check("GET", "/close", "", "until-the-end")
		check("POST", "/echo", "a body "+strings.Repeat("x", i*10000), "a body "+strings.Repeat("x", i*10000))
	}

	// Server-sent events: the first event arrives before the app sends
	// the second.
	resp, err := vis.Get(url + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); got <- l }()
	select {
	case l := <-got:
		if l != "data: one\n" {
			t.Fatalf("first event %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was held back")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

// With the local app down, the direct path answers the same 502 as the
// http.Server path.
func TestDirectPathAppDown(t *testing.T) {
	srv := tunneltest.StartServer(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", "http://"+freeAddr(t)))
	url := c.WaitURL(t, "web")
	resp, body, err := srv.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Porthole-Error") != "local_app_error" || !strings.Contains(body, "connection refused") {
		t.Fatalf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// A visitor who gives up on a stalled app cancels the request to the app
// on the direct path too: the client closes its connection to the app.
func TestDirectPathVisitorLeavesStalledApp(t *testing.T) {
	gone := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "ok")
			return
		}
		<-r.Context().Done()
		close(gone)
	}))
	t.Cleanup(app.Close)
	srv := tunneltest.StartServer(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitOK(t, srv, url+"/ok", "ok")
	vis := srv.Visitor()
	vis.Timeout = 300 * time.Millisecond
	if resp, err := vis.Get(url + "/stall"); err == nil {
		resp.Body.Close()
		t.Fatalf("got %d from a stalled app", resp.StatusCode)
	}
	select {
	case <-gone:
	case <-time.After(20 * time.Second):
		t.Fatal("the app's request was not cancelled after the visitor left")
	}
}
