package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

func startApp(t *testing.T, body string) *httptest.Server {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(app.Close)
	return app
}

func subdomainOf(url string) string {
	return strings.SplitN(strings.TrimPrefix(url, "http://"), ".", 2)[0]
}

// waitOK polls url through srv until it answers 200 with body.
func waitOK(t *testing.T, srv *tunneltest.Server, url, body string) {
	t.Helper()
	vis := srv.Visitor()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, got, err := tunneltest.Get(vis, url)
		if err == nil && resp.StatusCode == 200 && got == body {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %q in time; last: %v %q", url, body, err, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startTCPApp serves each connection to a loopback listener with handle,
// which owns it until it returns, and returns the listener's address.
func startTCPApp(t *testing.T, handle func(net.Conn)) string {
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
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestFailoverToSecondServer: when the first --server goes away, the client
// moves to the next one and keeps its name.
func TestFailoverToSecondServer(t *testing.T) {
	a := tunneltest.StartServer(t)
	b := tunneltest.StartServer(t)
	app := startApp(t, "app")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(a.TunnelURL(), b.TunnelURL()), tunneltest.HTTP("web", app.URL))
	urlA := c.WaitURL(t, "web")
	waitOK(t, a, urlA, "app")
	if got := c.Status().Server; got != a.TunnelURL() {
		t.Fatalf("connected to %s, want the first server %s", got, a.TunnelURL())
	}

	from := len(c.Events())
	a.Stop()
	e, _ := c.WaitEvent(t, from, 20*time.Second, func(e client.Event) bool { return e.Kind == client.EventForwarding })
	urlB := e.Tunnel.URL
	if subdomainOf(urlB) != subdomainOf(urlA) {
		t.Errorf("after failover the name changed from %s to %s", urlA, urlB)
	}
	_, portB, _ := net.SplitHostPort(b.PublicAddr())
	if !strings.HasSuffix(urlB, ":"+portB) {
		t.Errorf("URL after failover %q is not on the second server's port %s", urlB, portB)
	}
	waitOK(t, b, urlB, "app")
	if got := c.Status().Server; got != b.TunnelURL() {
		t.Fatalf("status says server %s, want %s", got, b.TunnelURL())
	}
}

// TestFirstServerDown: a client whose first server is down starts on the
// second.
func TestFirstServerDown(t *testing.T) {
	dead := "ws://" + freeAddr(t)
	b := tunneltest.StartServer(t)
	app := startApp(t, "app")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(dead, b.TunnelURL()), tunneltest.HTTP("web", app.URL))
	waitOK(t, b, c.WaitURL(t, "web"), "app")
}

// TestServerRestartSamePorts: the server goes away and a new one comes up
// on the same ports; the client, never restarted, gets the same URL back.
func TestServerRestartSamePorts(t *testing.T) {
	first := tunneltest.StartServer(t)
	app := startApp(t, "app")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(first.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitOK(t, first, url, "app")
	first.Stop()

	second := tunneltest.StartServer(t, func(cfg *server.Config) {
		cfg.HTTPAddr = first.PublicAddr()
		cfg.TunnelAddr = first.TunnelAddr().String()
	})
	waitOK(t, second, url, "app")
	if st := c.Status(); st.Tunnels[0].URL != url || st.Reconnects < 1 {
		t.Fatalf("after the restart: %+v", st)
	}
}

// TestStopUnbinds: a client that stops releases its names at once, with no
// grace period: another client can take the name immediately.
func TestStopUnbinds(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, "app")
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = "handed-over"
	first := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	url := first.WaitURL(t, "web")
	if err := first.Stop(); err != nil {
		t.Fatalf("Run after cancel returned %v, want nil", err)
	}
	if resp, _, _ := srv.Get(url); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("after a clean stop the name answers %v, want 404 (released, not held)", resp)
	}
	second := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	if got := second.WaitURL(t, "web"); got != url {
		t.Fatalf("second client got %s, want %s", got, url)
	}
}

// TestSeveralClientsSeveralTunnels: two clients with two tunnels each on one
// server, every URL reaching its own app.
func TestSeveralClientsSeveralTunnels(t *testing.T) {
	srv := tunneltest.StartServer(t)
	urls := map[string]string{}
	for _, cl := range []string{"c1", "c2"} {
		specs := []client.Spec{}
		for _, tn := range []string{"a", "b"} {
			app := startApp(t, cl+"/"+tn)
			specs = append(specs, tunneltest.HTTP(tn, app.URL))
		}
		c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), specs...)
		for _, tn := range []string{"a", "b"} {
			urls[cl+"/"+tn] = c.WaitURL(t, tn)
		}
	}
	seen := map[string]bool{}
	for want, url := range urls {
		if seen[url] {
			t.Fatalf("URL %s handed out twice", url)
		}
		seen[url] = true
		waitOK(t, srv, url, want)
	}
}

func TestStatusAPI(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, "app")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitOK(t, srv, url, "app")
	api := httptest.NewServer(c.Handler())
	defer api.Close()
	resp, err := http.Get(api.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var st struct {
		State   string `json:"state"`
		Server  string `json:"server"`
		Tunnels []struct {
			Name     string `json:"name"`
			URL      string `json:"public_url"`
			Target   string `json:"target"`
			Requests int    `json:"requests"`
		} `json:"tunnels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.State != "online" || st.Server != srv.TunnelURL() || len(st.Tunnels) != 1 ||
		st.Tunnels[0].URL != url || st.Tunnels[0].Name != "web" || st.Tunnels[0].Target != app.URL || st.Tunnels[0].Requests < 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestTCPTunnel forwards raw bytes both ways.
func TestTCPTunnel(t *testing.T) {
	echo := startTCPApp(t, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		c.Write([]byte(strings.ToUpper(string(data))))
	})
	_, port, _ := net.SplitHostPort(freeAddr(t))
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.TCPPorts = port + "-" + port })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()),
		client.Spec{Name: "db", Config: client.TunnelConfig{Proto: "tcp", Addr: echo}})
	url := c.WaitURL(t, "db")
	if url != "tcp://localhost:"+port {
		t.Fatalf("TCP tunnel URL %q, want tcp://localhost:%s", url, port)
	}
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("raw bytes"))
	conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "RAW BYTES" {
		t.Fatalf("through the TCP tunnel: %q %v", got, err)
	}
}

// TestFinalErrorStopsClient: Run returns a *FinalError and does not retry.
func TestFinalErrorStopsClient(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, "app")
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = "api"
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client kept going after a final error")
	}
	var fe *client.FinalError
	if err := c.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("Run returned %v", err)
	}
	if st := c.Status(); st.State != client.StateStopped {
		t.Fatalf("state %q after a final error", st.State)
	}
	for _, e := range c.Events() {
		if e.Kind == client.EventRetrying {
			t.Fatal("the client scheduled a retry after a final error")
		}
	}
}

// TestManyTunnelsOneClient: binds are pipelined; every tunnel gets its own
// URL and answers.
func TestManyTunnelsOneClient(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host)
	}))
	defer app.Close()
	var specs []client.Spec
	for i := range 30 {
		specs = append(specs, tunneltest.HTTP("t"+strconv.Itoa(i), app.URL))
	}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), specs...)
	seen := map[string]bool{}
	for _, s := range specs {
		url := c.WaitURL(t, s.Name)
		if seen[url] {
			t.Fatalf("URL %s given twice", url)
		}
		seen[url] = true
		waitOK(t, srv, url, strings.TrimPrefix(url, "http://"))
	}
}

// TestTCPPortHeldDuringGrace: a TCP tunnel's public port stays reserved for
// its client while it reconnects (connections to it are closed meanwhile),
// and the client gets the same port back.
func TestTCPPortHeldDuringGrace(t *testing.T) {
	echo := startTCPApp(t, func(c net.Conn) {
		io.Copy(c, c)
	})
	_, port, _ := net.SplitHostPort(freeAddr(t))
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.TCPPorts = port + "-" + port })
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())),
		client.Spec{Name: "db", Config: client.TunnelConfig{Proto: "tcp", Addr: echo}})
	url := c.WaitURL(t, "db")
	roundTrip := func() error {
		conn, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err = io.ReadFull(conn, b)
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatal(err)
	}
	proxy.Refuse(true)
	proxy.Cut()
	c.WaitEvent(t, 0, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventDisconnected })
	time.Sleep(200 * time.Millisecond) // the server sees the cut too
	if err := roundTrip(); err == nil {
		t.Fatal("a connection to a held port was forwarded while its client was away")
	}
	proxy.Refuse(false)
	deadline := time.Now().Add(20 * time.Second)
	for roundTrip() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the TCP tunnel did not come back on its port")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := c.Status().Tunnels[0].URL; got != url {
		t.Fatalf("URL after reconnect %s, want %s", got, url)
	}
}

// TestFinalErrorReleasesOtherTunnels: when one tunnel of a client is
// refused for good, the client exits and its other tunnels' names are
// released at once, so that running it again (with a fixed config) gets
// them back instead of "in use" for a whole grace period.
func TestFinalErrorReleasesOtherTunnels(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, "app")
	good := tunneltest.HTTP("good", app.URL)
	good.Config.Subdomain = "keep-me"
	bad := tunneltest.HTTP("bad", app.URL)
	bad.Config.Subdomain = "www"
	first := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), good, bad)
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client did not stop on the final error")
	}
	var fe *client.FinalError
	if err := first.Err(); !errors.As(err, &fe) {
		t.Fatalf("Run returned %v", err)
	}
	second := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), good)
	waitOK(t, srv, second.WaitURL(t, "good"), "app")
}

// TestStopWhileReconnecting: a client that cannot reach any server stops
// promptly and cleanly when asked.
func TestStopWhileReconnecting(t *testing.T) {
	dead := "ws://" + freeAddr(t)
	app := startApp(t, "app")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(dead), tunneltest.HTTP("web", app.URL))
	c.WaitEvent(t, 0, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventRetrying })
	if st := c.Status(); st.State != client.StateReconnecting && st.State != client.StateConnecting {
		t.Errorf("state %q while no server answers", st.State)
	}
	start := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop while reconnecting: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stopping took %s", d)
	}
	if st := c.Status(); st.State != client.StateStopped {
		t.Fatalf("state %q after Stop", st.State)
	}
}
