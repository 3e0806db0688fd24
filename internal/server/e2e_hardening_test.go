package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// stillServes proves the server works after abuse: a fresh client binds a
// tunnel and a visitor reaches the app through it.
func stillServes(t *testing.T, srv *tunneltest.Server) {
	t.Helper()
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "still here") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("check", app.URL))
	resp, body, err := srv.Get(c.WaitURL(t, "check"))
	if err != nil || resp.StatusCode != 200 || body != "still here" {
		t.Fatalf("server no longer serves: %v %v %q", statusOf(resp), err, body)
	}
	c.Stop()
}

// rawExchange writes data to addr and returns what comes back until the
// server closes the connection.
func rawExchange(t *testing.T, addr string, data []byte, closeWrite bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	out, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a connection open after %q", data)
	}
	return string(out)
}

// TestTunnelListenerGarbage sends bytes that are not a tunnel handshake,
// and broken frames after a real one. Each gets a clear answer or a
// closed connection, and the server keeps serving.
func TestTunnelListenerGarbage(t *testing.T) {
	srv := tunneltest.StartServer(t)
	addr := srv.TunnelAddr().String()

	t.Run("raw bytes", func(t *testing.T) {
		out := rawExchange(t, addr, []byte("\x16\x03\x01\x00\xffgarbage\x00\x01\r\n\r\n"), false)
		if !strings.HasPrefix(out, "HTTP/1.1 400 Bad Request") {
			t.Fatalf("got %q, want a 400 answer", out)
		}
	})
	t.Run("truncated handshake", func(t *testing.T) {
		out := rawExchange(t, addr, []byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: webs"), true)
		if out != "" && !strings.HasPrefix(out, "HTTP/1.1 400") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("plain GET", func(t *testing.T) {
		resp, body, err := tunneltest.Get(http.DefaultClient, "http://"+addr+"/")
		if err != nil || resp.StatusCode != http.StatusUpgradeRequired || !strings.Contains(body, "porthole") {
			t.Fatalf("GET / on the tunnel listener: %v %v %q", statusOf(resp), err, body)
		}
	})

	// After a valid WebSocket upgrade, bytes that are not multiplexer
	// frames end the session.
	for _, payload := range [][]byte{
		[]byte("this is not a multiplexer frame"),
		{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, // data frame header, body never comes
		{0},
	} {
		t.Run(fmt.Sprintf("websocket %q", payload[:min(len(payload), 8)]), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, srv.TunnelURL(), &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			if err := ws.Write(ctx, websocket.MessageBinary, payload); err != nil {
				t.Fatal(err)
			}
			if len(payload) < 12 || payload[0] == 0 {
				// A partial header: the server waits for the rest
				// until the handshake timeout; hang up instead.
				ws.Close(websocket.StatusNormalClosure, "")
			}
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					if ctx.Err() != nil {
						t.Fatal("the server kept the session open after garbage")
					}
					break
				}
			}
		})
	}
	// The operator learns why such a session ended.
	if !srv.Logs.Contains("invalid protocol version") {
		t.Error("the server log does not say the client sent invalid multiplexer frames")
	}

	// On the control stream: each malformed message gets an error that says
	// what was wrong, then the session ends.
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"malformed hello", frame(protocol.TypeHello, `{"version":`), "malformed"},
		{"hello of the wrong type", frame(protocol.TypeHello, `{"version":"one"}`), "malformed"},
		{"oversize frame", oversizeFrame(), "too large"},
		{"bind before hello", frame(protocol.TypeBind, `{"id":1,"kind":"http"}`), "expected hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dialRaw(t, srv)
			s.ctrl.Write(tc.bytes)
			m, err := s.r.Read()
			e, ok := m.(*protocol.Error)
			if err != nil || !ok || e.Code != protocol.CodeBadRequest || !e.Final || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("got %#v, %v; want a final bad_request saying %q", m, err, tc.want)
			}
			if _, err := s.r.Read(); err == nil {
				t.Fatal("session still open after a protocol error")
			}
		})
	}
	t.Run("garbage after welcome", func(t *testing.T) {
		s := dialRaw(t, srv)
		s.hello(t)
		s.ctrl.Write(frame(protocol.TypeBind, "\x00\x01\x02"))
		m, err := s.r.Read()
		for err == nil {
			if e, ok := m.(*protocol.Error); ok {
				if e.Code != protocol.CodeBadRequest || !e.Final {
					t.Fatalf("got %+v", e)
				}
				break
			}
			m, err = s.r.Read() // pings may come first
		}
		if err != nil {
			t.Fatalf("no error message before the session ended: %v", err)
		}
	})
	t.Run("truncated frames", func(t *testing.T) {
		for _, cut := range []int{1, 4, 5, 9} {
			s := dialRaw(t, srv)
			full := frame(protocol.TypeHello, `{"version":1}`)
			s.ctrl.Write(full[:cut])
			s.ctrl.Close() // FIN in the middle of a frame
			// The server may say what was wrong; it must not accept it.
			m, err := s.r.Read()
			if err == nil {
				if e, ok := m.(*protocol.Error); !ok || e.Code != protocol.CodeBadRequest {
					t.Fatalf("cut at %d: the server answered a truncated hello with %#v", cut, m)
				}
				_, err = s.r.Read()
			}
			if err == nil {
				t.Fatalf("cut at %d: session still open", cut)
			}
		}
	})
	stillServes(t, srv)
	waitMetric(t, srv, "porthole_sessions", 0)
}

func waitMetric(t *testing.T, srv *tunneltest.Server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := srv.Metric(name)
		if err == nil && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (%v), want %v", name, v, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func frame(typ protocol.MsgType, payload string) []byte {
	b := []byte{byte(typ), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func oversizeFrame() []byte {
	b := frame(protocol.TypeHello, "")
	binary.BigEndian.PutUint32(b[1:], 1<<30)
	return b
}

// TestHugeHeader431: request headers over the limit get 431, and the
// server goes on serving.
func TestHugeHeader431(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	host := strings.TrimPrefix(url, "http://")
	c, err := net.Dial("tcp", srv.PublicAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		// The server may stop reading part way; write errors are expected.
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", host, strings.Repeat("a", 1<<20))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1 MiB header: %d, want 431", resp.StatusCode)
	}
	// Just under the 64 KiB default passes.
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Big", strings.Repeat("b", 60<<10))
	r2, err := srv.Visitor().Do(req)
	if err != nil || r2.StatusCode != 200 {
		t.Fatalf("a 60 KiB header: %v %v", statusOf(r2), err)
	}
	r2.Body.Close()
	waitStatus(t, srv, url, 200, 5*time.Second)
}

// TestStalledRequestClosed: a visitor that sends half a request line and
// stops is disconnected after the read-header timeout.
func TestStalledRequestClosed(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.HTTP.ReadHeaderTimeout = config.Duration(time.Second) })
	c, err := net.Dial("tcp", srv.PublicAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write([]byte("GET /slow HT"))
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(c)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close a connection stalled in its request line")
	}
	if elapsed < 900*time.Millisecond {
		t.Fatalf("closed after %s, before the 1 s read-header timeout", elapsed)
	}
	t.Logf("closed after %s", elapsed.Round(time.Millisecond))
	// Other visitors were not affected.
	_, port, _ := net.SplitHostPort(srv.PublicAddr())
	if resp, _, err := srv.Get("http://nobody.localhost:" + port); err != nil || resp.StatusCode != 404 {
		t.Fatalf("after the stall: %v %v", statusOf(resp), err)
	}
}

// TestGracefulShutdownDrains: a request in flight when shutdown starts
// completes; new connections are refused; the client is told.
func TestGracefulShutdownDrains(t *testing.T) {
	started := make(chan struct{})
	srv, c, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			return
		}
		close(started)
		w.Write([]byte("first half,"))
		w.(http.Flusher).Flush()
		time.Sleep(time.Second)
		w.Write([]byte("second half"))
	})
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, body, err := srv.Get(url + "/slow")
		done <- result{statusOf(resp), body, err}
	}()
	<-started
	from := len(c.Events())
	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	time.Sleep(200 * time.Millisecond)
	if conn, err := net.DialTimeout("tcp", srv.PublicAddr(), time.Second); err == nil {
		conn.Close()
		t.Error("the public listener accepts connections during shutdown")
	}
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "first half,second half" {
		t.Fatalf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	e, _ := c.WaitEvent(t, from, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventDisconnected })
	if !strings.Contains(e.Err.Error(), "shutting down") {
		t.Errorf("client was told %v, want the server's shutdown notice", e.Err)
	}
}

// TestShutdownIsBounded: a request that never ends does not hold shutdown
// past its timeout.
func TestShutdownIsBounded(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	started := make(chan struct{}, 1)
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *server.Config) { c.HTTP.ShutdownTimeout = config.Duration(time.Second) })
	go srv.Get(url)
	<-started
	start := time.Now()
	srv.Stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("shutdown with a stuck request took %s; the limit is 1 s plus session teardown", d)
	}
	once.Do(func() { close(release) })
}

// TestIPv6 runs every listener, the client connection and the local app on
// ::1; the local app is reached as localhost:PORT.
func TestIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	seen := make(chan string, 1)
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Forwarded-For") + " " + r.Header.Get("Forwarded")
		io.WriteString(w, "v6 app")
	}))
	app.Listener = ln
	app.Start()
	defer app.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	srv := tunneltest.StartServer(t, func(c *server.Config) {
		c.HTTPAddr = "[::1]:0"
		c.TunnelAddr = "[::1]:0"
		c.AdminAddr = "[::1]:0"
	})
	if !strings.HasPrefix(srv.TunnelURL(), "ws://[::1]:") {
		t.Fatalf("tunnel URL %q", srv.TunnelURL())
	}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", port))
	resp, body, err := srv.Get(c.WaitURL(t, "web"))
	if err != nil || resp.StatusCode != 200 || body != "v6 app" {
		t.Fatalf("over IPv6: %v %v %q", statusOf(resp), err, body)
	}
	if got := <-seen; !strings.HasPrefix(got, `::1 for="[::1]"`) {
		t.Fatalf("app saw forwarding headers %q, want the IPv6 visitor", got)
	}
}

// TestIdleVisitorConnectionClosed: a kept-alive visitor connection that
// stays idle past the idle timeout is closed by the server.
func TestIdleVisitorConnectionClosed(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(c *server.Config) { c.HTTP.IdleTimeout = config.Duration(time.Second) })
	c, err := net.Dial("tcp", srv.PublicAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(url, "http://"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first response: %d, close=%v; want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF from the server closing it", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("closed after %s, before the 1 s idle timeout", d)
	}
}
