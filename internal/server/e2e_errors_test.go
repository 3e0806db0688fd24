package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/transport"
	"github.com/porthole/porthole/internal/tunneltest"
)

func TestUnknownHost404(t *testing.T) {
	srv := tunneltest.StartServer(t)
	_, port, _ := net.SplitHostPort(srv.PublicAddr())
	url := "http://nobody-here.localhost:" + port + "/x"
	resp, body, err := srv.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 404 || !strings.Contains(body, "nobody-here.localhost") {
		t.Fatalf("got %d %q, want 404 naming the host", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Porthole-Error") == "" {
		t.Error("no X-Porthole-Error header for programs")
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err = srv.Visitor().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(html), "nobody-here.localhost") {
		t.Fatalf("browser 404: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), html)
	}
}

// closedPort returns a loopback port that nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

func TestAppDown502(t *testing.T) {
	srv := tunneltest.StartServer(t)
	port := closedPort(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()),
		tunneltest.HTTP("explicit", "127.0.0.1:"+port), tunneltest.HTTP("bare", port))
	for name, addr := range map[string]string{"explicit": "127.0.0.1:" + port, "bare": "localhost:" + port} {
		resp, body, err := srv.Get(c.WaitURL(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, addr) {
			t.Errorf("%s: got %d %q, want 502 naming %s", name, resp.StatusCode, body, addr)
		}
	}
	if !c.Logs.Contains("local app refused the connection") {
		t.Error("the client did not log the refused local connection")
	}
	// The tunnel itself is fine: once the app is up, it answers.
	if c.Status().State != client.StateOnline {
		t.Errorf("client state %q after 502s", c.Status().State)
	}
}

// TestClientAwayGraceAndResume cuts a client's connection and keeps it from
// reconnecting: visitors get 503 with Retry-After, nobody else can take the
// name, and when the client is back it has the same random URL.
func TestClientAwayGraceAndResume(t *testing.T) {
	srv := tunneltest.StartServer(t)
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	sub := strings.SplitN(strings.TrimPrefix(url, "http://"), ".", 2)[0]
	if resp, body, err := srv.Get(url); err != nil || body != "up" {
		t.Fatalf("before the cut: %v %v %q", statusOf(resp), err, body)
	}

	proxy.Refuse(true)
	proxy.Cut()
	resp, body := waitStatus(t, srv, url, http.StatusServiceUnavailable, 10*time.Second)
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra <= 0 {
		t.Errorf("503 without a usable Retry-After: %q", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, sub) {
		t.Errorf("503 body %q does not name the host", body)
	}

	// Another client asking for the held name is refused, for good.
	spec := tunneltest.HTTP("thief", app.URL)
	spec.Config.Subdomain = sub
	thief := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	select {
	case <-thief.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a client asking for a held name neither failed nor stopped")
	}
	var fe *client.FinalError
	if err := thief.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("thief got %v, want a final 'in use' error", err)
	}
	if resp, _, _ := srv.Get(url); statusOf(resp) != http.StatusServiceUnavailable {
		t.Fatalf("after the refused bind the name answers %d, want 503", statusOf(resp))
	}

	// The owner comes back and gets the same URL.
	proxy.Refuse(false)
	waitStatus(t, srv, url, http.StatusOK, 20*time.Second)
	st := c.Status()
	if st.Tunnels[0].URL != url || st.Reconnects < 1 {
		t.Fatalf("after reconnecting: URL %q (was %q), %d reconnects", st.Tunnels[0].URL, url, st.Reconnects)
	}
	for _, e := range c.Events() {
		if e.Kind == client.EventForwarding && e.Tunnel.URL != url {
			t.Fatalf("the client was given another URL %q during the reconnect", e.Tunnel.URL)
		}
	}
}

// TestGraceExpires: after the grace period the name is free again.
func TestGraceExpires(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Tunnel.GracePeriod = config.Duration(2 * time.Second) })
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Host) })
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = "grace-test"
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), spec)
	url := c.WaitURL(t, "web")
	proxy.Refuse(true)
	proxy.Cut()
	waitStatus(t, srv, url, http.StatusServiceUnavailable, 10*time.Second)
	waitStatus(t, srv, url, http.StatusNotFound, 10*time.Second)
	other := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	if got := other.WaitURL(t, "web"); got != url {
		t.Fatalf("after the grace period another client got %q, want %q", got, url)
	}
	waitStatus(t, srv, url, http.StatusOK, 10*time.Second)
}

// waitStatus polls url until it answers status, and returns that answer.
func waitStatus(t *testing.T, srv *tunneltest.Server, url string, status int, within time.Duration) (*http.Response, string) {
	t.Helper()
	vis := srv.Visitor()
	deadline := time.Now().Add(within)
	last := ""
	for {
		resp, body, err := tunneltest.Get(vis, url)
		if err == nil && resp.StatusCode == status {
			return resp, body
		}
		last = fmt.Sprintf("%d %q %v", statusOf(resp), body, err)
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within %s; last: %s", url, status, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFinalBindErrors(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) {})
	owner := tunneltest.HTTP("web", app.URL)
	owner.Config.Subdomain = "taken-name"
	tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), owner).WaitURL(t, "web")

	for _, tc := range []struct{ sub, want string }{
		{"taken-name", "in use"},
		{"www", "reserved"},
		{"admin", "reserved"},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			spec := tunneltest.HTTP("web", app.URL)
			spec.Config.Subdomain = tc.sub
			before, _ := srv.Metric("porthole_sessions_total")
			c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("client did not stop on a final error")
			}
			var fe *client.FinalError
			if err := c.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a final error saying %q", err, tc.want)
			}
			// It did not retry.
			if after, _ := srv.Metric("porthole_sessions_total"); after != before+1 {
				t.Fatalf("%v sessions for one final error", after-before)
			}
		})
	}
	// An invalid name is refused by the client before it connects.
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = "Not_Valid"
	_, err := client.New(tunneltest.ClientConfig(srv.TunnelURL()), []client.Spec{spec}, client.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "Not_Valid") {
		t.Fatalf("client.New with an invalid subdomain: %v", err)
	}
}

// rawSession speaks the control protocol by hand on a real connection.
type rawSession struct {
	mux  *transport.Session
	ctrl net.Conn
	w    *protocol.Writer
	r    *protocol.Reader
}

func dialRaw(t *testing.T, srv *tunneltest.Server) *rawSession {
	t.Helper()
	mux, err := transport.Dial(context.Background(), srv.TunnelURL(), transport.DialOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	ctrl, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawSession{mux: mux, ctrl: ctrl, w: protocol.NewWriter(ctrl), r: protocol.NewReader(ctrl)}
}

func (s *rawSession) hello(t *testing.T) *protocol.Welcome {
	t.Helper()
	if err := s.w.Write(&protocol.Hello{Version: protocol.Version}); err != nil {
		t.Fatal(err)
	}
	wel, err := protocol.Expect[*protocol.Welcome](s.r)
	if err != nil {
		t.Fatal(err)
	}
	return wel
}

func TestServerValidatesBinds(t *testing.T) {
	srv := tunneltest.StartServer(t)
	s := dialRaw(t, srv)
	wel := s.hello(t)
	if wel.SessionID == "" || len(wel.ResumeToken) < 16 || wel.HeartbeatMillis <= 0 {
		t.Fatalf("welcome %+v", wel)
	}
	tests := []struct {
		bind protocol.Bind
		code protocol.Code
	}{
		{protocol.Bind{Kind: "http", Subdomain: "-bad-"}, protocol.CodeInvalidName},
		{protocol.Bind{Kind: "http", Subdomain: "UPPER"}, protocol.CodeInvalidName},
		{protocol.Bind{Kind: "http", Subdomain: strings.Repeat("a", 64)}, protocol.CodeInvalidName},
		{protocol.Bind{Kind: "http", Subdomain: "www"}, protocol.CodeNameReserved},
		{protocol.Bind{Kind: "http", Hostname: "app.localhost"}, protocol.CodeInvalidName},
		{protocol.Bind{Kind: "http", Hostname: "app.example.org"}, protocol.CodeForbidden},
		{protocol.Bind{Kind: "ftp"}, protocol.CodeBadRequest},
		{protocol.Bind{Kind: "tcp", RemotePort: 1}, protocol.CodePortUnavailable},
	}
	for i, tc := range tests {
		b := tc.bind
		b.ID = uint32(i + 1)
		if err := s.w.Write(&b); err != nil {
			t.Fatal(err)
		}
		m, err := s.r.Read()
		if err != nil {
			t.Fatal(err)
		}
		e, ok := m.(*protocol.Error)
		if !ok || e.ID != b.ID || e.Code != tc.code || !e.Final || e.Message == "" {
			t.Errorf("bind %+v: got %#v, want a final %s error for id %d", tc.bind, m, tc.code, b.ID)
		}
	}
	// The session survives refused binds: a good one still works.
	s.w.Write(&protocol.Bind{ID: 99, Kind: "http", Subdomain: "fine-name"})
	b, err := protocol.Expect[*protocol.Bound](s.r)
	if err != nil || b.ID != 99 || b.Hostname != "fine-name.localhost" || len(b.URLs) != 1 {
		t.Fatalf("good bind after refusals: %+v %v", b, err)
	}
}

// TestUnknownProtocolVersion: a client from another protocol version is
// told so clearly, at the WebSocket handshake and in hello.
func TestUnknownProtocolVersion(t *testing.T) {
	srv := tunneltest.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, resp, err := websocket.Dial(ctx, srv.TunnelURL(), &websocket.DialOptions{Subprotocols: []string{"porthole.v2"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("handshake with porthole.v2: %v, %v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	e, ok := protocol.DecodeRefusal(body)
	if !ok || e.Code != protocol.CodeUnsupportedVersion || !e.Final || !strings.Contains(e.Message, "porthole.v1") {
		t.Fatalf("refusal %q", body)
	}

	s := dialRaw(t, srv)
	s.w.Write(&protocol.Hello{Version: 2})
	_, err = protocol.Expect[*protocol.Welcome](s.r)
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeUnsupportedVersion || !perr.Final || !strings.Contains(perr.Message, "version 2") {
		t.Fatalf("hello version 2: got %v", err)
	}
	// The server hangs up after telling it.
	if _, err := s.r.Read(); err == nil {
		t.Fatal("the session stayed open after an unsupported version")
	}
}

// TestHeartbeatDetectsSilentDrop: the path between client and server stops
// carrying bytes without closing. Both sides notice within 30 s (three
// heartbeats), and the client reconnects to the same URL.
func TestHeartbeatDetectsSilentDrop(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Tunnel.Heartbeat = config.Duration(time.Second) })
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alive") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitStatus(t, srv, url, 200, 5*time.Second)

	from := len(c.Events())
	start := time.Now()
	proxy.Blackhole()
	e, _ := c.WaitEvent(t, from, 30*time.Second, func(e client.Event) bool { return e.Kind == client.EventDisconnected })
	if !strings.Contains(e.Err.Error(), "silent") {
		t.Errorf("client disconnected with %v, want it to say the server went silent", e.Err)
	}
	clientSaw := time.Since(start)
	for !srv.Logs.Contains("client silent") {
		if time.Since(start) > 30*time.Second {
			t.Fatal("the server did not notice the silent client within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("client noticed after %s, server after %s", clientSaw.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if clientSaw > 30*time.Second {
		t.Fatalf("client took %s", clientSaw)
	}
	// A new connection through the proxy works: the tunnel is back.
	waitStatus(t, srv, url, 200, 30*time.Second)
}

// TestSameNameTwiceInOneSession: a session that asks for a name it already
// holds is refused; its first tunnel keeps the name and keeps serving.
func TestSameNameTwiceInOneSession(t *testing.T) {
	srv := tunneltest.StartServer(t)
	s := dialRaw(t, srv)
	s.hello(t)
	s.w.Write(&protocol.Bind{ID: 1, Kind: "http", Subdomain: "dup"})
	first, err := protocol.Expect[*protocol.Bound](s.r)
	if err != nil {
		t.Fatal(err)
	}
	s.w.Write(&protocol.Bind{ID: 2, Kind: "http", Subdomain: "dup"})
	m, err := s.r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.(*protocol.Error); !ok || e.ID != 2 || e.Code != protocol.CodeNameTaken {
		t.Fatalf("second bind of the same name in one session: got %#v, want name_taken", m)
	}
	if n, _ := srv.Metric("porthole_tunnels"); n != 1 {
		t.Fatalf("porthole_tunnels = %v, want 1", n)
	}
	// Streams for the name still carry the first tunnel's id.
	go srv.Get(first.URLs[0])
	st, err := s.mux.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, err := protocol.ReadStreamHeader(st)
	if err != nil || h.TunnelID != first.TunnelID {
		t.Fatalf("stream for the name: %+v %v, want tunnel %s", h, err, first.TunnelID)
	}
}

func TestSamePortTwiceInOneSession(t *testing.T) {
	port := closedPort(t)
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.TCPPorts = port + "-" + port })
	s := dialRaw(t, srv)
	s.hello(t)
	p, _ := strconv.Atoi(port)
	s.w.Write(&protocol.Bind{ID: 1, Kind: "tcp", RemotePort: p})
	if _, err := protocol.Expect[*protocol.Bound](s.r); err != nil {
		t.Fatal(err)
	}
	s.w.Write(&protocol.Bind{ID: 2, Kind: "tcp", RemotePort: p})
	m, err := s.r.Read()
	if e, ok := m.(*protocol.Error); err != nil || !ok || e.ID != 2 || e.Code != protocol.CodePortUnavailable {
		t.Fatalf("second bind of the same port in one session: got %#v %v, want port_unavailable", m, err)
	}
	if n, _ := srv.Metric("porthole_tunnels"); n != 1 {
		t.Fatalf("porthole_tunnels = %v, want 1", n)
	}
}

// TestRandomNameLostAfterGrace: a client whose random name was taken by
// someone else after its grace period ran out gets a new random name
// instead of failing.
func TestRandomNameLostAfterGrace(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Tunnel.GracePeriod = config.Duration(500 * time.Millisecond) })
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "first") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	proxy.Refuse(true)
	proxy.Cut()
	waitStatus(t, srv, url, http.StatusNotFound, 10*time.Second) // grace over

	other := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "squatter") })
	spec := tunneltest.HTTP("web", other.URL)
	spec.Config.Subdomain = strings.SplitN(strings.TrimPrefix(url, "http://"), ".", 2)[0]
	tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec).WaitURL(t, "web")

	from := len(c.Events())
	proxy.Refuse(false)
	e, _ := c.WaitEvent(t, from, 20*time.Second, func(e client.Event) bool { return e.Kind == client.EventForwarding })
	if e.Tunnel.URL == url || !forwardingURL.MatchString(e.Tunnel.URL) {
		t.Fatalf("after losing its name the client got %q (had %q)", e.Tunnel.URL, url)
	}
	if _, body, err := srv.Get(e.Tunnel.URL); err != nil || body != "first" {
		t.Fatalf("new URL: %q %v", body, err)
	}
	if _, body, err := srv.Get(url); err != nil || body != "squatter" {
		t.Fatalf("old URL now belongs to the other client: %q %v", body, err)
	}
}

// TestHostVariants: the Host header is matched without case, port or a
// trailing dot.
func TestHostVariants(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "found") })
	host := strings.TrimPrefix(url, "http://")
	name, port, _ := net.SplitHostPort(host)
	for _, h := range []string{host, strings.ToUpper(host), name, name + ".:" + port, strings.ToUpper(name) + "."} {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = h
		resp, err := srv.Visitor().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "found" {
			t.Errorf("Host %q: %d %q", h, resp.StatusCode, body)
		}
	}
}
