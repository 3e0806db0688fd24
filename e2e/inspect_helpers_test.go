package e2e

// Helpers for the inspector and dashboard end-to-end tests: the real
// porthole binary, a real server on loopback ports, a local app that
// reports what reaches it.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

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

// inspectStartServer starts a `porthole server --no-auth` for localhost
// on fresh loopback addresses; it is ended with SIGTERM (SIGKILL after
// 5 s).
func inspectStartServer(t *testing.T) *serverProc {
	t.Helper()
	return startServerAt(t, terminated, 10*time.Second, "--no-auth", "--domain", "localhost", "--shutdown-timeout", "1s")
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
	a := &inspectApp{seen: make(chan inspectSeen, 100)}
	a.addr = serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}), ReadHeaderTimeout: 5 * time.Second})
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

// inspectClient is a `porthole http` process with its status API and
// request inspector on inspectAddr.
type inspectClient struct {
	*proc
	url         string // the public URL from the Forwarding line
	inspectAddr string
}

// inspectStartClient runs `porthole http APP` against srv with extra
// flags and waits for its Forwarding line. It is ended with SIGTERM
// (SIGKILL after 5 s).
func inspectStartClient(t *testing.T, srv *serverProc, app *inspectApp, extra ...string) *inspectClient {
	t.Helper()
	c := &inspectClient{inspectAddr: freeAddr(t)}
	args := append([]string{"http", app.addr, "--server", srv.wsURL(), "--inspect-addr", c.inspectAddr}, extra...)
	c.proc = startPorthole(t, terminated, args...)
	c.url = c.forwardingWithin(t, 1, 15*time.Second)[0]
	return c
}

// inspectVisit sends a visitor's request to a public URL through the
// server's loopback listener (the URL's *.localhost host is sent as Host,
// so no resolver is involved).
func inspectVisit(t *testing.T, srv *serverProc, method, publicURL, path, contentType, body string) *http.Response {
	t.Helper()
	hc := visitorClient(t, srv.httpAddr, "", 0, 10*time.Second)
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, publicURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("X-E2e", "visitor")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}
