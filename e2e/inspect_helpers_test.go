package e2e

// Helpers for the inspector and dashboard end-to-end tests: the real
// porthole binary, a real server on loopback ports, a local app that
// reports what reaches it.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

var inspectBuild struct {
	once sync.Once
	path string
	err  error
}

// inspectBinary builds cmd/porthole once per test process.
func inspectBinary(t *testing.T) string {
	t.Helper()
	inspectBuild.once.Do(func() {
		// `go test` runs the test binary from a work directory that it
		// removes afterwards: build beside it so nothing is left behind.
		dir := ""
		if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
			dir = filepath.Dir(exe)
		} else if dir, err = os.MkdirTemp("", "porthole-e2e-"); err != nil {
			inspectBuild.err = err
			return
		}
		inspectBuild.path = filepath.Join(dir, "porthole")
		cmd := exec.Command("go", "build", "-o", inspectBuild.path, "../cmd/porthole")
		if out, err := cmd.CombinedOutput(); err != nil {
			inspectBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if inspectBuild.err != nil {
		t.Fatal(inspectBuild.err)
	}
	return inspectBuild.path
}

// inspectRequireTool skips when a tool is missing, except in CI, where
// .ci/browser.sh installs it and its absence is a failure.
func inspectRequireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; CI installs it with .ci/browser.sh", name)
		}
		t.Skipf("%s is not installed (apt-get install -y %s)", name, name)
	}
	return p
}

// inspectFreeAddr returns a loopback address with a port that was free a
// moment ago.
func inspectFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// inspectServer is a `porthole server --no-auth` process.
type inspectServer struct {
	t                           *testing.T
	bin, dataDir                string
	httpAddr, tunnelAddr, admin string
	cmd                         *exec.Cmd
	exited                      chan struct{}
	log                         *inspectLog
}

// inspectStartServer starts a server on fresh loopback ports. Another
// program may take a port between our probe and the server's bind, so it
// tries a few times.
func inspectStartServer(t *testing.T) *inspectServer {
	t.Helper()
	s := &inspectServer{t: t, bin: inspectBinary(t), dataDir: t.TempDir()}
	var err error
	for range 5 {
		s.httpAddr, s.tunnelAddr, s.admin = inspectFreeAddr(t), inspectFreeAddr(t), inspectFreeAddr(t)
		if err = s.start(); err == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("server did not start: %v", err)
	return nil
}

func (s *inspectServer) start() error {
	s.log = &inspectLog{}
	s.cmd = exec.Command(s.bin, "server", "--no-auth", "--domain", "localhost",
		"--http-addr", s.httpAddr, "--tunnel-addr", s.tunnelAddr, "--admin-addr", s.admin,
		"--data-dir", s.dataDir, "--shutdown-timeout", "1s")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() { s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("server exited: %s", s.log)
		default:
		}
		resp, err := http.Get("http://" + s.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.cmd.Process.Kill()
	<-exited
	return fmt.Errorf("server not healthy in 10s: %s", s.log)
}

// stop ends the server with SIGTERM (SIGKILL after 5 s).
func (s *inspectServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	inspectStop(s.cmd, s.exited)
	s.cmd = nil
}

// restart starts the server again on the same addresses.
func (s *inspectServer) restart() {
	s.t.Helper()
	var err error
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("server did not restart: %v", err)
}

func (s *inspectServer) wsURL() string { return "ws://" + s.tunnelAddr }

// inspectStop asks a process to stop and waits until exited is closed.
func inspectStop(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// inspectLog collects a process's output for failure messages.
type inspectLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *inspectLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *inspectLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// inspectApp is the local app behind the tunnel: it answers JSON and
// reports every request it receives.
type inspectApp struct {
	addr string
	seen chan inspectSeen
}

type inspectSeen struct {
	Method, URI string
	Header      http.Header
	Body        string
}

func inspectStartApp(t *testing.T) *inspectApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &inspectApp{addr: ln.Addr().String(), seen: make(chan inspectSeen, 100)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			inspectAppWebSocket(w, r)
			return
		case "/sse":
			inspectAppEvents(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		a.seen <- inspectSeen{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(b)}
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"method":%q,"path":%q,"received_bytes":%d}`, r.Method, r.URL.Path, len(b))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

// inspectAppWebSocket echoes one WebSocket message.
func inspectAppWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	typ, msg, err := c.Read(r.Context())
	if err != nil {
		return
	}
	c.Write(r.Context(), typ, msg)
	c.Close(websocket.StatusNormalClosure, "")
}

// inspectAppEvents sends one server-sent event, then waits for the
// visitor to hang up: the event arrives only if every layer flushes.
func inspectAppEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, "data: first\n\n")
	http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// next returns the next request the app received, failing after timeout.
func (a *inspectApp) next(t *testing.T, timeout time.Duration) inspectSeen {
	t.Helper()
	select {
	case s := <-a.seen:
		return s
	case <-time.After(timeout):
		t.Fatal("the local app received nothing")
	}
	return inspectSeen{}
}

var inspectForwardingRE = regexp.MustCompile(`(https?|tcp)://[^ ]+`)

// inspectClient is a `porthole http` process whose stdout is a pipe.
type inspectClient struct {
	cmd         *exec.Cmd
	exited      chan struct{}
	url         string // the public URL from the Forwarding line
	inspectAddr string
	stdout      *inspectLog
	stderr      *inspectLog
}

// inspectStartClient runs `porthole http APP` against srv with extra
// flags and waits for its Forwarding line.
func inspectStartClient(t *testing.T, srv *inspectServer, app *inspectApp, extra ...string) *inspectClient {
	t.Helper()
	c := &inspectClient{inspectAddr: inspectFreeAddr(t), stdout: &inspectLog{}, stderr: &inspectLog{}, exited: make(chan struct{})}
	args := append([]string{"http", app.addr, "--server", srv.wsURL(), "--inspect-addr", c.inspectAddr}, extra...)
	c.cmd = exec.Command(inspectBinary(t), args...)
	c.cmd.Stderr = c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inspectStop(c.cmd, c.exited) })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.stdout.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		c.cmd.Wait()
		close(c.exited)
	}()
	timeout := time.After(15 * time.Second)
	for c.url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("client exited before forwarding: %s", c.stderr)
			}
			if strings.HasPrefix(l, "Forwarding") {
				c.url = inspectForwardingRE.FindString(l)
			}
		case <-timeout:
			t.Fatalf("no Forwarding line in 15s; stderr: %s", c.stderr)
		}
	}
	return c
}

// inspectVisit sends a visitor's request to a public URL through the
// server's loopback listener (the URL's *.localhost host is sent as Host,
// so no resolver is involved).
func inspectVisit(t *testing.T, srv *inspectServer, method, publicURL, path, contentType, body string) *http.Response {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.httpAddr)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, publicURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("X-E2e", "visitor")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}
