package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The pool and access tests run real servers and clients from the binary
// TestMain builds, through the harness's serverProc and proc.

// poolApp is a local HTTP app behind one pool member. It answers with its
// name and counts the visitor requests that reached it.
type poolApp struct {
	name string
	port string
	srv  *http.Server

	hits    atomic.Int64 // requests other than the health check
	healthy atomic.Bool  // what /ok answers
	held    atomic.Int64 // /slow requests waiting for release
	mu      sync.Mutex
	release chan struct{} // closing it ends the /slow requests
	seen    []http.Header // headers of /headers requests
}

func startPoolApp(t *testing.T, name string) *poolApp {
	t.Helper()
	a := &poolApp{name: name, release: make(chan struct{})}
	a.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve)}
	go a.srv.Serve(ln)
	t.Cleanup(func() { a.releaseSlow(); a.srv.Close() })
	_, a.port, _ = net.SplitHostPort(ln.Addr().String())
	return a
}

func (a *poolApp) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ok" {
		if !a.healthy.Load() {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
		return
	}
	a.hits.Add(1)
	switch r.URL.Path {
	case "/slow":
		a.mu.Lock()
		ch := a.release
		a.mu.Unlock()
		a.held.Add(1)
		defer a.held.Add(-1)
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	case "/headers":
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Clone())
		a.mu.Unlock()
		w.Header().Set("Server", "poolapp/1.0")
		w.Header().Set("X-Powered-By", "go")
		w.Header().Set("X-Keep", "kept")
		json.NewEncoder(w).Encode(r.Header)
		return
	}
	if r.Method == http.MethodPost {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%d", a.name, len(b))
		return
	}
	io.WriteString(w, a.name)
}

// releaseSlow ends the /slow requests held now; later ones wait again.
func (a *poolApp) releaseSlow() {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.release)
	a.release = make(chan struct{})
}

// refuse stops the app: its port refuses connections from now on.
func (a *poolApp) refuse() { a.srv.Close() }

// restart serves again on the same port after refuse.
func (a *poolApp) restart(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+a.port)
	if err != nil {
		t.Fatal(err)
	}
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve)}
	go a.srv.Serve(ln)
	srv := a.srv
	t.Cleanup(func() { srv.Close() })
}

func (a *poolApp) lastHeaders() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return nil
	}
	return a.seen[len(a.seen)-1]
}

// poolVisitor is an HTTP client whose connections all go to the server's
// public listener (as wildcard DNS would send them), from localIP when
// it is not empty.
func poolVisitor(t *testing.T, httpAddr, localIP string) *http.Client {
	return visitorClient(t, httpAddr, localIP, 32, 20*time.Second)
}

// poolResult is one visitor request's outcome.
type poolResult struct {
	method string
	status int
	body   string
	header http.Header
	err    error
}

func (r poolResult) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s: %v", r.method, r.err)
	}
	return fmt.Sprintf("%s: %d %q", r.method, r.status, clip(r.body, 120))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// poolDo sends one request to url with optional headers ("Name: value").
func poolDo(c *http.Client, method, url, body string, headers ...string) poolResult {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return poolResult{method: method, err: err}
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := c.Do(req)
	if err != nil {
		return poolResult{method: method, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return poolResult{method: method, status: resp.StatusCode, body: string(b), header: resp.Header, err: err}
}

// poolCount sends n sequential GETs to url and counts the answers by body;
// any answer other than 200 fails the test.
func poolCount(t *testing.T, c *http.Client, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		r := poolDo(c, http.MethodGet, url, "")
		if r.err != nil || r.status != 200 {
			t.Fatalf("GET %s: %s (after %v)", url, r, got)
		}
		got[r.body]++
	}
	return got
}

// startPoolServer runs a server without authentication (every client is
// the same anonymous user) on loopback.
func startPoolServer(t *testing.T, extra ...string) *serverProc {
	t.Helper()
	return startIDServer(t, t.TempDir(), "", append([]string{"--no-auth"}, extra...)...)
}

// poolEcho is a TCP app that greets each connection with its name and a
// newline, then echoes.
type poolEcho struct {
	*tcpApp
	name string
	port string
}

func startPoolEcho(t *testing.T, name string) *poolEcho {
	t.Helper()
	a := startTCPApp(t, func(c net.Conn) {
		io.WriteString(c, name+"\n")
		io.Copy(c, c)
	})
	return &poolEcho{tcpApp: a, name: name, port: a.port()}
}

// poolTCPGreeting connects to addr (from localIP when set) and returns the
// app's greeting line, or an error when the connection is closed first.
func poolTCPGreeting(addr, localIP string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "echo\n"); err != nil {
		return "", err
	}
	if back, err := br.ReadString('\n'); err != nil || back != "echo\n" {
		return "", fmt.Errorf("echo: %q %v", back, err)
	}
	return strings.TrimSpace(line), nil
}
