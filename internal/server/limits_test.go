package server_test

// Limits, each exceeded against a real server, client and app on loopback:
// what the visitor or the client is told, that a refused request never
// reaches the app, and that the hit is counted by kind in /metrics. The
// limits that need user accounts (tunnels and sessions per user, failed
// authentications, per-user overrides) are tested with the built binary
// in e2e/limits_test.go.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// limRace is set when the tests run under the race detector.
var limRace bool

// limHits reads porthole_limit_hits_total for kind.
func limHits(t *testing.T, srv *tunneltest.Server, kind limits.Kind) float64 {
	t.Helper()
	v, err := srv.Metric(`porthole_limit_hits_total{kind="` + string(kind) + `"}`)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// limLogCount counts the server's "limit hit" lines for kind.
func limLogCount(srv *tunneltest.Server, kind limits.Kind) int {
	n := 0
	for _, l := range strings.Split(srv.Logs.String(), "\n") {
		if strings.Contains(l, `msg="limit hit"`) && strings.Contains(l, "limit="+string(kind)+" ") {
			n++
		}
	}
	return n
}

// limCheck429 checks a refusal by a limit: 429, a Retry-After of whole
// seconds (at least 1), and the limit's kind in X-Porthole-Error. It
// returns the Retry-After.
func limCheck429(t *testing.T, resp *http.Response, body string, kind limits.Kind) time.Duration {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d (%q), want 429", resp.StatusCode, body)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
	}
	if got := resp.Header.Get("X-Porthole-Error"); got != string(kind) {
		t.Fatalf("X-Porthole-Error %q, want %q", got, kind)
	}
	if !strings.HasPrefix(body, "429 Too many requests") {
		t.Fatalf("body %q does not explain the refusal", body)
	}
	return time.Duration(ra) * time.Second
}

// limSecondIP returns another loopback address to visit from, as a second
// visitor would, or skips when the system has none.
func limSecondIP(t *testing.T, target string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", target)
	if err != nil {
		t.Skipf("cannot use 127.0.0.2 as a second visitor address: %v", err)
	}
	c.Close()
	return "127.0.0.2"
}

// limVisitorFrom is a visitor whose connections come from localIP.
func limVisitorFrom(t *testing.T, srv *tunneltest.Server, localIP string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, srv.PublicAddr())
		},
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// limGate blocks the app's handlers until opened; it opens at cleanup at
// the latest, so the app can shut down.
type limGate struct {
	in   atomic.Int64
	ch   chan struct{}
	open func()
}

func newLimGate(t *testing.T) *limGate {
	g := &limGate{ch: make(chan struct{})}
	g.open = sync.OnceFunc(func() { close(g.ch) })
	t.Cleanup(g.open)
	return g
}

func (g *limGate) wait() {
	g.in.Add(1)
	<-g.ch
}

// waitIn waits until n handlers are blocked.
func (g *limGate) waitIn(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.in.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests reached the app, want %d", g.in.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countOK is an app handler that counts its requests in hits and
// answers "ok".
func countOK(hits *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}
}

// limSend sends n GETs to url with vis, one after another, and counts
// those answered 200 and those refused with a 429 for kind (checked by
// limCheck429); retry is the last refusal's Retry-After.
func limSend(t *testing.T, vis *http.Client, url string, n int, kind limits.Kind) (ok, refused int, retry time.Duration) {
	t.Helper()
	for range n {
		resp, body, err := tunneltest.Get(vis, url)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			ok++
			continue
		}
		retry = limCheck429(t, resp, body, kind)
		refused++
	}
	return ok, refused, retry
}

// TestLimitTunnelRequestRate: requests_per_second and burst. A burst of
// requests passes, the excess gets 429 with Retry-After and never reaches
// the app, and after the wait the tunnel serves again.
func TestLimitTunnelRequestRate(t *testing.T) {
	var hits atomic.Int64
	srv, _, url := tunnel(t, countOK(&hits), func(c *server.Config) {
		c.Limits.RequestsPerSecond = 5
		c.Limits.Burst = 10
	})
	vis := srv.Visitor()
	start := time.Now()
	ok, refused, retry := limSend(t, vis, url+"/", 30, limits.TunnelRequestRate)
	elapsed := time.Since(start)
	// The burst, plus what the bucket refilled at 5/s meanwhile.
	if most := 10 + int(5*elapsed.Seconds()) + 1; ok < 10 || ok > most {
		t.Fatalf("%d of 30 requests passed in %v; want the burst of 10, at most %d", ok, elapsed, most)
	}
	if refused == 0 {
		t.Fatal("nothing refused")
	}
	if hits.Load() != int64(ok) {
		t.Fatalf("the app saw %d requests, %d were let through: a refused request reached it", hits.Load(), ok)
	}
	if n := limHits(t, srv, limits.TunnelRequestRate); n != float64(refused) {
		t.Fatalf("limit hits metric %v, want %d", n, refused)
	}
	time.Sleep(retry)
	resp, body, err := tunneltest.Get(vis, url+"/")
	if err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("after Retry-After: %v %v %q", statusOf(resp), err, body)
	}
}

// TestLimitHitLogIsThrottled floods a tunnel with 1,000 requests at many
// times its limit: each refusal is counted, but the log gets a line per
// ten seconds, not per request.
func TestLimitHitLogIsThrottled(t *testing.T) {
	var hits atomic.Int64
	srv, _, url := tunnel(t, countOK(&hits), func(c *server.Config) {
		c.Limits.RequestsPerSecond = 5
		c.Limits.Burst = 5
	})
	vis := srv.Visitor()
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	jobs := make(chan struct{}, 1000)
	for range 1000 {
		jobs <- struct{}{}
	}
	close(jobs)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				resp, _, err := tunneltest.Get(vis, url+"/")
				switch {
				case err != nil:
					t.Error(err)
					return
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ok.Load()+refused.Load() != 1000 {
		t.FailNow()
	}
	if hits.Load() != ok.Load() {
		t.Fatalf("the app saw %d requests, %d passed", hits.Load(), ok.Load())
	}
	if n := limHits(t, srv, limits.TunnelRequestRate); n != float64(refused.Load()) {
		t.Fatalf("metric %v, want %d refusals", n, refused.Load())
	}
	lines := limLogCount(srv, limits.TunnelRequestRate)
	if most := 1 + int(elapsed/(10*time.Second)) + 1; lines < 1 || lines > most {
		t.Fatalf("%d 'limit hit' log lines for %d refusals in %v; want 1 to %d", lines, refused.Load(), elapsed, most)
	}
	// Refused requests write no access log line either.
	if n := strings.Count(srv.Logs.String(), "msg=request "); int64(n) != ok.Load() {
		t.Fatalf("%d access log lines for %d served requests", n, ok.Load())
	}
	t.Logf("%d served, %d refused in %v; %d log lines", ok.Load(), refused.Load(), elapsed.Round(time.Millisecond), lines)
}

// TestLimitBandwidth: bandwidth_bytes_per_second shapes each direction on
// its own: a download and an upload running at once both take about
// size/rate, and both arrive intact.
func TestLimitBandwidth(t *testing.T) {
	size, rate := int64(100<<20), int64(10<<20)
	lo, hi := 7*time.Second, 16*time.Second
	switch {
	case testing.Short():
		size, rate = 16<<20, 4<<20
		lo, hi = 2500*time.Millisecond, 10*time.Second
	case limRace:
		size, rate = 24<<20, 3<<20
		lo, hi = 5500*time.Millisecond, 16*time.Second
	}
	var received atomic.Int64
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.CopyN(w, randomBytes(7), size)
		case http.MethodPut:
			n, _ := io.Copy(io.Discard, r.Body)
			received.Store(n)
			io.WriteString(w, strconv.FormatInt(n, 10))
		}
	}, func(c *server.Config) { c.Limits.BandwidthBytesPerSecond = rate })
	vis := srv.Visitor()
	var wg sync.WaitGroup
	var down, up time.Duration
	var downN int64
	var downErr, upErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		start := time.Now()
		resp, err := vis.Get(url + "/down")
		if err != nil {
			downErr = err
			return
		}
		defer resp.Body.Close()
		downN, downErr = io.Copy(io.Discard, resp.Body)
		down = time.Since(start)
	}()
	go func() {
		defer wg.Done()
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPut, url+"/up", io.LimitReader(randomBytes(8), size))
		req.ContentLength = size
		resp2, err := vis.Do(req)
		if err != nil {
			upErr = err
			return
		}
		b, _ := io.ReadAll(resp2.Body)
		resp2.Body.Close()
		if string(b) != strconv.FormatInt(size, 10) {
			upErr = fmt.Errorf("the app received %q bytes", b)
		}
		up = time.Since(start)
	}()
	wg.Wait()
	if downErr != nil || upErr != nil {
		t.Fatalf("download: %v; upload: %v", downErr, upErr)
	}
	if downN != size {
		t.Fatalf("downloaded %d of %d bytes", downN, size)
	}
	t.Logf("%d MiB at %d MiB/s: download %v, upload %v", size>>20, rate>>20, down.Round(time.Millisecond), up.Round(time.Millisecond))
	for _, d := range []struct {
		name string
		took time.Duration
	}{{"download", down}, {"upload", up}} {
		if d.took < lo || d.took > hi {
			t.Errorf("%s of %d MiB at %d MiB/s took %v, want %v-%v", d.name, size>>20, rate>>20, d.took, lo, hi)
		}
	}
	if limHits(t, srv, limits.UserBandwidth) == 0 {
		t.Error("shaping is not counted in porthole_limit_hits_total")
	}
}

// TestLimitConcurrentRequestsPerTunnel: max_connections_per_tunnel caps a
// tunnel's requests in flight; the one over gets 429 and never reaches
// the app.
func TestLimitConcurrentRequestsPerTunnel(t *testing.T) {
	var hits atomic.Int64
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Limits.MaxConnectionsPerTunnel = 3 })
	gate := newLimGate(t)
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/slow" {
			gate.wait()
		}
		io.WriteString(w, "ok")
	})
	t.Cleanup(gate.open)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	vis := srv.Visitor()

	var wg sync.WaitGroup
	statuses := make(chan int, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := tunneltest.Get(vis, url+"/slow")
			if err != nil {
				t.Error(err)
				statuses <- 0
				return
			}
			statuses <- resp.StatusCode
		}()
	}
	gate.waitIn(t, 3)
	resp, body, err := tunneltest.Get(vis, url+"/fast")
	if err != nil {
		t.Fatal(err)
	}
	limCheck429(t, resp, body, limits.TunnelConnections)
	if hits.Load() != 3 {
		t.Fatalf("the app saw %d requests, want the 3 in flight", hits.Load())
	}
	gate.open()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Fatalf("a request in flight ended with %d", s)
		}
	}
	// The slots are free again.
	for range 5 {
		if resp, _, err := tunneltest.Get(vis, url+"/fast"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the requests finished: %v %v", statusOf(resp), err)
		}
	}
	if n := limHits(t, srv, limits.TunnelConnections); n != 1 {
		t.Fatalf("metric %v, want 1", n)
	}
}

// limEchoApp is a TCP app that echoes lines and counts connections.
type limEchoApp struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  []net.Conn
}

func startLimEcho(t *testing.T) *limEchoApp {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &limEchoApp{ln: ln}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.conns.Add(1)
			a.mu.Lock()
			a.open = append(a.open, c)
			a.mu.Unlock()
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		a.mu.Lock()
		for _, c := range a.open {
			c.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return a
}

// limDialEcho connects to a TCP tunnel and proves the path to the app
// with one echoed line.
func limDialEcho(t *testing.T, addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		c.Close()
		return nil, fmt.Errorf("echo: %q %v", line, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// TestLimitConcurrentTCPConnectionsPerTunnel: on a TCP tunnel the same key
// caps open connections; the one over is closed at once, before it
// reaches the client or the app.
func TestLimitConcurrentTCPConnectionsPerTunnel(t *testing.T) {
	port := closedPort(t)
	srv := tunneltest.StartServer(t, func(c *server.Config) {
		c.TCPPorts = port + "-" + port
		c.Limits.MaxConnectionsPerTunnel = 2
	})
	app := startLimEcho(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()),
		client.Spec{Name: "raw", Config: client.TunnelConfig{Proto: "tcp", Addr: app.ln.Addr().String()}})
	c.WaitURL(t, "raw")
	addr := net.JoinHostPort("127.0.0.1", port)
	var held []net.Conn
	for range 2 {
		conn, err := limDialEcho(t, addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	if _, err := limDialEcho(t, addr); err == nil {
		t.Fatal("a third connection was forwarded with a cap of 2")
	}
	if n := app.conns.Load(); n != 2 {
		t.Fatalf("the app saw %d connections, want 2", n)
	}
	if n := limHits(t, srv, limits.TunnelConnections); n != 1 {
		t.Fatalf("metric %v, want 1", n)
	}
	held[0].Close()
	// The slot frees when the server sees the close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := limDialEcho(t, addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection after one closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	held[1].Close()
}

// TestLimitStreamsPerSession: max_streams_per_session caps the streams a
// client session has open. A request that would need one more gets 503
// with Retry-After, and never reaches the client; streams that sit idle
// in one tunnel's pool do not starve the session's other tunnels.
func TestLimitStreamsPerSession(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Limits.MaxStreamsPerSession = 2 })
	gate := newLimGate(t)
	var hitsB atomic.Int64
	appA := startApp(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			gate.wait()
		}
		io.WriteString(w, "a")
	})
	appB := startApp(t, func(w http.ResponseWriter, r *http.Request) {
		hitsB.Add(1)
		io.WriteString(w, "b")
	})
	t.Cleanup(gate.open)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()),
		tunneltest.HTTP("a", appA.URL), tunneltest.HTTP("b", appB.URL))
	urlA, urlB := c.WaitURL(t, "a"), c.WaitURL(t, "b")
	vis := srv.Visitor()

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, _, err := tunneltest.Get(vis, urlA+"/slow"); err != nil || resp.StatusCode != 200 {
				t.Errorf("request holding a stream: %v %v", statusOf(resp), err)
			}
		}()
	}
	gate.waitIn(t, 2)
	resp, body, err := tunneltest.Get(vis, urlB+"/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("X-Porthole-Error") != string(limits.SessionStreams) {
		t.Fatalf("over the stream limit: %d Retry-After=%q X-Porthole-Error=%q %q, want 503 session_streams",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Porthole-Error"), body)
	}
	if hitsB.Load() != 0 {
		t.Fatal("the refused request reached the app")
	}
	if n := limHits(t, srv, limits.SessionStreams); n < 1 {
		t.Fatalf("metric %v, want at least 1", n)
	}
	gate.open()
	wg.Wait()
	// Both of a's streams are idle now, kept for reuse; b gets one.
	for i := range 3 {
		resp, body, err := tunneltest.Get(vis, urlB+"/")
		if err != nil || resp.StatusCode != 200 || body != "b" {
			t.Fatalf("request %d to b after a's requests finished: %v %v %q", i+1, statusOf(resp), err, body)
		}
	}
	if resp, body, err := tunneltest.Get(vis, urlA+"/"); err != nil || resp.StatusCode != 200 || body != "a" {
		t.Fatalf("a after b: %v %v %q", statusOf(resp), err, body)
	}
}

// TestLimitTunnelsPerSession: for clients without a user (a --no-auth
// server), max_tunnels_per_user counts one session's tunnels. The client
// asking for more stops with the reason, without retrying.
func TestLimitTunnelsPerSession(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Limits.MaxTunnelsPerUser = 2 })
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) {})
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()),
		tunneltest.HTTP("one", app.URL), tunneltest.HTTP("two", app.URL), tunneltest.HTTP("three", app.URL))
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("client still running after a final limit")
	}
	var fe *client.FinalError
	if err := c.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "tunnel limit reached") {
		t.Fatalf("client ended with %v, want a final error naming the tunnel limit", err)
	}
	if n := limHits(t, srv, limits.UserTunnels); n != 1 {
		t.Fatalf("metric %v, want 1", n)
	}
	if n, _ := srv.Metric("porthole_sessions_total"); n != 1 {
		t.Fatalf("%v sessions: the client retried a final error", n)
	}
}

// TestLimitServerTunnels: max_tunnels caps the whole server. A client
// over it is told to come back later (retryable, with a wait) and backs
// off instead of exiting or hammering.
func TestLimitServerTunnels(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Limits.MaxTunnels = 2 })
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	a := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("one", app.URL), tunneltest.HTTP("two", app.URL))
	a.WaitURL(t, "one")
	a.WaitURL(t, "two")
	b := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("three", app.URL))
	e, _ := b.WaitEvent(t, 0, 15*time.Second, func(e client.Event) bool { return e.Kind == client.EventRetrying })
	var perr *protocol.Error
	if !errors.As(e.Err, &perr) || perr.Code != protocol.CodeLimitExceeded || perr.Final || !strings.Contains(perr.Message, "capacity") {
		t.Fatalf("retrying after %v, want a retryable limit_exceeded about the server's capacity", e.Err)
	}
	if e.RetryIn < 30*time.Second {
		t.Fatalf("the client retries in %v; the server asked for 30s", e.RetryIn)
	}
	before, _ := srv.Metric("porthole_sessions_total")
	time.Sleep(time.Second)
	if after, _ := srv.Metric("porthole_sessions_total"); after != before {
		t.Fatalf("the client reconnected %v times within a second of being told to wait", after-before)
	}
	select {
	case <-b.Done():
		t.Fatalf("the client stopped on a retryable limit: %v", b.Err())
	default:
	}
	if n := limHits(t, srv, limits.ServerTunnels); n != 1 {
		t.Fatalf("metric %v, want 1", n)
	}
	// The tunnels in service are untouched.
	if resp, _, err := srv.Get(a.WaitURL(t, "one")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a tunnel within the cap: %v %v", statusOf(resp), err)
	}
}

// TestLimitVisitorConnectionsPerIP: visitor_connections_per_ip. An
// address with its connections open is answered 429 and closed at once;
// other addresses are served, and a closed connection frees its slot.
func TestLimitVisitorConnectionsPerIP(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(c *server.Config) { c.Limits.VisitorConnectionsPerIP = 3 })
	addr := srv.PublicAddr()
	second := limSecondIP(t, addr) // before the slots fill: it connects too
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	// Accepting is asynchronous; retry until the fourth is refused.
	var out string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasPrefix(out, "HTTP/1.1 429") && time.Now().Before(deadline) {
		out = rawExchange(t, addr, []byte("GET / HTTP/1.1\r\nHost: "+strings.TrimPrefix(url, "http://")+"\r\nConnection: close\r\n\r\n"), false)
	}
	if !strings.HasPrefix(out, "HTTP/1.1 429") || !strings.Contains(out, "Retry-After: 1\r\n") ||
		!strings.Contains(out, "X-Porthole-Error: "+string(limits.VisitorConnections)) {
		t.Fatalf("fourth connection from one address got %q", out)
	}
	if n := limHits(t, srv, limits.VisitorConnections); n < 1 {
		t.Fatalf("metric %v", n)
	}
	// Another visitor is not held up.
	if resp, body, err := tunneltest.Get(limVisitorFrom(t, srv, second), url); err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("another address: %v %v %q", statusOf(resp), err, body)
	}
	held[0].Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		resp, _, err := tunneltest.Get(limVisitorFrom(t, srv, "127.0.0.1"), url)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection did not free its slot: %v %v", statusOf(resp), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLimitVisitorRequestRate: visitor_requests_per_second_per_ip. One
// address over its rate gets 429s that never reach the app, while another
// address keeps being served by the same tunnel.
func TestLimitVisitorRequestRate(t *testing.T) {
	var hits atomic.Int64
	srv, _, url := tunnel(t, countOK(&hits), func(c *server.Config) {
		c.Limits.VisitorRequestsPerIP = 2
		c.Limits.VisitorBurstPerIP = 5
	})
	second := limSecondIP(t, srv.PublicAddr())
	noisy, quiet := limVisitorFrom(t, srv, "127.0.0.1"), limVisitorFrom(t, srv, second)
	start := time.Now()
	ok, refused, _ := limSend(t, noisy, url, 20, limits.VisitorRequestRate)
	if most := 5 + int(2*time.Since(start).Seconds()) + 1; ok < 5 || ok > most {
		t.Fatalf("%d of 20 passed; want the burst of 5, at most %d", ok, most)
	}
	for range 5 {
		if resp, _, err := tunneltest.Get(quiet, url); err != nil || resp.StatusCode != 200 {
			t.Fatalf("the other address: %v %v", statusOf(resp), err)
		}
	}
	if hits.Load() != int64(ok+5) {
		t.Fatalf("the app saw %d requests, %d passed", hits.Load(), ok+5)
	}
	if n := limHits(t, srv, limits.VisitorRequestRate); n != float64(refused) {
		t.Fatalf("metric %v, want %d", n, refused)
	}
}

// limHandshake sends a WebSocket upgrade for the tunnel protocol to addr
// from localIP and returns the answer's status, headers and body.
func limHandshake(t *testing.T, addr, localIP, bearer string) (int, http.Header, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	auth := ""
	if bearer != "" {
		auth = "Authorization: Bearer " + bearer + "\r\n"
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: %s\r\n%s\r\n", addr, protocol.Subprotocol, auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, string(body)
}

// TestLimitHandshakesPerIP: handshakes_per_second_per_ip. Past its burst
// an address is refused with 429, rate_limited and a wait; other
// addresses are not; and a real client refused this way backs off and
// then connects.
func TestLimitHandshakesPerIP(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) {
		c.Limits.HandshakesPerIP = 0.5
		c.Limits.HandshakeBurstPerIP = 2
	})
	addr := srv.TunnelAddr().String()
	second := limSecondIP(t, addr) // its own handshake, from its own bucket
	for i := range 2 {
		if st, _, body := limHandshake(t, addr, "127.0.0.1", ""); st != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d of the burst: %d %s", i+1, st, body)
		}
	}
	st, h, body := limHandshake(t, addr, "127.0.0.1", "")
	e, ok := protocol.DecodeRefusal([]byte(body))
	if st != http.StatusTooManyRequests || !ok || e.Code != protocol.CodeRateLimited || e.Final || e.RetryAfterMillis < 1000 || h.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d Retry-After=%q %s", st, h.Get("Retry-After"), body)
	}
	if st, _, body := limHandshake(t, addr, second, ""); st != http.StatusSwitchingProtocols {
		t.Fatalf("another address: %d %s", st, body)
	}
	// A client from the throttled address is told to wait, waits, and
	// gets in.
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	ev, i := c.WaitEvent(t, 0, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventRetrying })
	var perr *protocol.Error
	if !errors.As(ev.Err, &perr) || perr.Code != protocol.CodeRateLimited {
		t.Fatalf("client retrying after %v, want rate_limited", ev.Err)
	}
	if ev.RetryIn < time.Second {
		t.Fatalf("client retries in %v; the server asked for at least 1s", ev.RetryIn)
	}
	c.WaitEvent(t, i, 15*time.Second, func(e client.Event) bool { return e.Kind == client.EventForwarding })
	if n := limHits(t, srv, limits.HandshakeRate); n < 2 {
		t.Fatalf("metric %v, want at least 2", n)
	}
}

// TestLimitControlMessages: control_messages_per_second. A session that
// sends control messages faster is told to slow down (rate_limited, not
// final, with a wait) and disconnected; a real client backs off for that
// long, reconnects and gets its URL back.
func TestLimitControlMessages(t *testing.T) {
	t.Run("flood", func(t *testing.T) {
		srv := tunneltest.StartServer(t, func(c *server.Config) {
			c.Limits.ControlMessagesPerSecond = 5
			c.Limits.ControlBurst = 10
		})
		s := dialRaw(t, srv)
		s.hello(t)
		for i := range 50 {
			if err := s.w.Write(&protocol.Ping{Seq: uint64(i + 1), UnixNano: time.Now().UnixNano()}); err != nil {
				break // the server hung up
			}
		}
		var refusal *protocol.Error
		for refusal == nil {
			m, err := s.r.Read()
			if err != nil {
				t.Fatalf("session ended without telling the client why: %v", err)
			}
			refusal, _ = m.(*protocol.Error)
		}
		if refusal.Code != protocol.CodeRateLimited || refusal.Final || refusal.RetryAfterMillis < 1000 {
			t.Fatalf("got %+v, want a retryable rate_limited with a wait", refusal)
		}
		// Then the session ends.
		if _, err := s.r.Read(); err == nil {
			t.Fatal("the session goes on after the refusal")
		}
		if n := limHits(t, srv, limits.ControlRate); n != 1 {
			t.Fatalf("metric %v, want 1", n)
		}
		waitMetric(t, srv, "porthole_sessions", 0)
	})
	t.Run("client backs off", func(t *testing.T) {
		// Heartbeats every second both ways are two messages a second
		// against a budget of one: the bucket runs dry within seconds.
		srv := tunneltest.StartServer(t, func(c *server.Config) {
			c.Limits.ControlMessagesPerSecond = 1
			c.Limits.ControlBurst = 3
			c.Tunnel.Heartbeat = config.Duration(time.Second)
		})
		app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
		url := c.WaitURL(t, "web")
		ev, i := c.WaitEvent(t, 0, 20*time.Second, func(e client.Event) bool { return e.Kind == client.EventRetrying })
		var perr *protocol.Error
		if !errors.As(ev.Err, &perr) || perr.Code != protocol.CodeRateLimited || ev.RetryIn < time.Second {
			t.Fatalf("client retrying in %v after %v, want rate_limited and at least 1s", ev.RetryIn, ev.Err)
		}
		c.WaitEvent(t, i, 15*time.Second, func(e client.Event) bool { return e.Kind == client.EventConnected })
		// Back online at the same URL (a changed URL would be a new
		// Forwarding event).
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := c.Status()
			if st.State == client.StateOnline && len(st.Tunnels) == 1 && st.Tunnels[0].URL == url {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not back online at %s: %+v", url, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if resp, _, err := srv.Get(url); err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the reconnect: %v %v", statusOf(resp), err)
		}
		if n := limHits(t, srv, limits.ControlRate); n < 1 {
			t.Fatalf("metric %v", n)
		}
	})
}

// TestLimitFloodLeavesNothingBehind: a flood of short connections from
// one address, many over its caps, leaves every per-address slot free
// once it ends (the package's TestMain checks that no goroutine is left).
func TestLimitFloodLeavesNothingBehind(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(c *server.Config) {
			c.Limits.VisitorConnectionsPerIP = 4
			c.Limits.VisitorRequestsPerIP = 50
			c.Limits.VisitorBurstPerIP = 50
		})
	var wg sync.WaitGroup
	var refusedConn atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				c, err := net.DialTimeout("tcp", srv.PublicAddr(), 5*time.Second)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", strings.TrimPrefix(url, "http://"))
				b, _ := io.ReadAll(c)
				if strings.Contains(string(b), string(limits.VisitorConnections)) {
					refusedConn.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	if refusedConn.Load() == 0 {
		t.Log("no connection over the per-address cap (the flood never had 5 open at once)")
	}
	// Every slot is free again: a visitor gets its 4 connections.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var conns []net.Conn
		okAll := true
		for range 4 {
			c, err := net.Dial("tcp", srv.PublicAddr())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", strings.TrimPrefix(url, "http://"))
		}
		for _, c := range conns {
			b, _ := io.ReadAll(c)
			if !strings.HasPrefix(string(b), "HTTP/1.1 200") && !strings.HasPrefix(string(b), "HTTP/1.1 429") {
				okAll = false
			}
			if strings.Contains(string(b), string(limits.VisitorConnections)) {
				okAll = false
			}
			c.Close()
		}
		if okAll {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection slots stay taken after the flood ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLimitServerTunnelsReconnect: a server at max_tunnels takes back a
// client whose connection dropped on its side only: its tunnels are still
// counted in the stale session, and must not count against it when it
// reconnects to take them over.
func TestLimitServerTunnelsReconnect(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) {
		c.Limits.MaxTunnels = 1
		c.Tunnel.Heartbeat = config.Duration(2 * time.Second)
	})
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	from := len(c.Events())
	proxy.CutClientSide()
	_, i := c.WaitEvent(t, from, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventConnected })
	deadline := time.Now().Add(5 * time.Second)
	for !c.Status().Tunnels[0].Bound {
		if time.Now().After(deadline) {
			t.Fatalf("not bound again after reconnecting; events since: %v", c.Events()[i:])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Logs.Contains("client silent") {
		t.Fatal("the stale session was already gone: this run did not test a takeover")
	}
	if resp, body, err := srv.Get(url); err != nil || resp.StatusCode != 200 || body != "app" {
		t.Fatalf("after the reconnect: %v %v %q", statusOf(resp), err, body)
	}
	if n := limHits(t, srv, limits.ServerTunnels); n != 0 {
		t.Fatalf("server_tunnels hit %v times by a client taking its own tunnel back", n)
	}
}
