package server_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// The attack tests of --basic-auth run a real server, client and app on
// loopback. Requests from addresses loopback cannot have (an IPv6 /64, a
// spray of fresh addresses) go through the server's public handler with
// that RemoteAddr, and from there through the real tunnel.

const (
	atkUser = "alice"
	atkPW   = "Attack-pw-61d0c2f7"
	// accessBurst is the throttle's default: wrong passwords per address
	// before 429.
	accessBurst = 10
)

// atkApp is a local app that counts requests and keeps the last one's
// headers.
type atkApp struct {
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func (a *atkApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.hits.Add(1)
	a.mu.Lock()
	a.last = r.Header.Clone()
	a.mu.Unlock()
	io.WriteString(w, "app")
}

func (a *atkApp) headers() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// lockedTunnel starts a server, an app and a client whose tunnel "web"
// asks visitors for atkUser:atkPW.
func lockedTunnel(t *testing.T) (*tunneltest.Server, *tunneltest.Client, *atkApp, string) {
	t.Helper()
	srv := tunneltest.StartServer(t)
	app := &atkApp{}
	hs := startApp(t, app.ServeHTTP)
	spec := tunneltest.HTTP("web", hs.URL)
	spec.Config.BasicAuth = []string{atkUser + ":" + atkPW}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	return srv, c, app, c.WaitURL(t, "web")
}

func basicHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// visitWith sends a GET to url with the given Authorization (none when
// empty) and returns the status, headers and body.
func visitWith(t *testing.T, vis *http.Client, url, authz string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := vis.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// serveFrom sends a GET for url through the public handler as if it came
// from remote (an "ip:port").
func serveFrom(srv *tunneltest.Server, url, remote, authz string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, url, nil)
	r.RemoteAddr = remote
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	srv.ServePublicForTest(w, r)
	return w
}

// want429 checks a refusal by the guessing throttle.
func want429(t *testing.T, what string, status int, h http.Header) {
	t.Helper()
	ra, err := strconv.Atoi(h.Get("Retry-After"))
	if status != http.StatusTooManyRequests || err != nil || ra < 1 || h.Get("X-Porthole-Error") != "visitor_access_failures_per_ip" {
		t.Fatalf("%s: %d (Retry-After %q, X-Porthole-Error %q), want 429 from the guessing throttle with Retry-After",
			what, status, h.Get("Retry-After"), h.Get("X-Porthole-Error"))
	}
}

// TestBasicAuthThrottledAddressGets429: once an address has used up its
// wrong passwords, it gets 429 with Retry-After whatever it sends: a
// wrong password, no password, and the right one. Nothing reaches the
// app, and another address is not affected.
func TestBasicAuthThrottledAddressGets429(t *testing.T) {
	srv, _, app, url := lockedTunnel(t)
	vis := srv.Visitor()
	for i := range accessBurst {
		if st, _, _ := visitWith(t, vis, url, basicHeader(atkUser, fmt.Sprint("guess-", i))); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i, st)
		}
	}
	st, h, _ := visitWith(t, vis, url, basicHeader(atkUser, "guess-again"))
	want429(t, "a wrong password past the burst", st, h)
	hashes := server.CredHashesForTest()
	st, h, body := visitWith(t, vis, url, basicHeader(atkUser, atkPW))
	want429(t, "the right password from a throttled address", st, h)
	if strings.Contains(body, "app") || app.hits.Load() != 0 {
		t.Fatalf("the app was reached (%d requests, body %q)", app.hits.Load(), body)
	}
	if server.CredHashesForTest() != hashes {
		t.Fatal("the password of a throttled address was hashed: the refusal must come first")
	}
	st, h, _ = visitWith(t, vis, url, "")
	want429(t, "no password from a throttled address", st, h)
	if ip := limSecondIP(t, srv.PublicAddr()); ip != "" {
		if st, _, body := visitWith(t, limVisitorFrom(t, srv, ip), url, basicHeader(atkUser, atkPW)); st != 200 || body != "app" {
			t.Fatalf("the right password from another address: %d %q, want 200", st, body)
		}
	}
}

// TestBasicAuthParallelGuessesWithinBurst: 60 wrong passwords sent at
// once from one address: no more than the burst are checked (answered
// 401 and hashed), the others get 429.
func TestBasicAuthParallelGuessesWithinBurst(t *testing.T) {
	srv, _, app, url := lockedTunnel(t)
	vis := srv.Visitor()
	const n = 60
	var wg sync.WaitGroup
	var unauthorized, throttled, other atomic.Int64
	start := make(chan struct{})
	hashes := server.CredHashesForTest()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", basicHeader(atkUser, fmt.Sprint("parallel-", i)))
			resp, err := vis.Do(req)
			if err != nil {
				other.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				unauthorized.Add(1)
			case http.StatusTooManyRequests:
				throttled.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	checked := server.CredHashesForTest() - hashes
	t.Logf("401: %d, 429: %d, other: %d, hashes: %d", unauthorized.Load(), throttled.Load(), other.Load(), checked)
	if unauthorized.Load() > accessBurst || checked > accessBurst {
		t.Fatalf("%d guesses answered 401 and %d hashed, over the burst of %d", unauthorized.Load(), checked, accessBurst)
	}
	if other.Load() != 0 || unauthorized.Load()+throttled.Load() != n || app.hits.Load() != 0 {
		t.Fatalf("answers: %d other, app reached %d times", other.Load(), app.hits.Load())
	}
}

// TestBasicAuthIPv6Per64: wrong passwords from many addresses of one
// IPv6 /64 are throttled together (also the right password from a fresh
// address in it); another /64 is not affected.
func TestBasicAuthIPv6Per64(t *testing.T) {
	srv, _, app, url := lockedTunnel(t)
	for i := range accessBurst {
		w := serveFrom(srv, url, fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1), basicHeader(atkUser, "guess"))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d from a fresh address of the /64: %d, want 401", i, w.Code)
		}
	}
	w := serveFrom(srv, url, "[2001:db8:1:2:ffff:ffff:ffff:fffe]:4000", basicHeader(atkUser, "guess"))
	want429(t, "another address of the same /64", w.Code, w.Header())
	w = serveFrom(srv, url, "[2001:db8:1:2:abcd::1]:4000", basicHeader(atkUser, atkPW))
	want429(t, "the right password from the throttled /64", w.Code, w.Header())
	if app.hits.Load() != 0 {
		t.Fatal("a throttled /64 reached the app")
	}
	w = serveFrom(srv, url, "[2001:db8:1:3::1]:4000", basicHeader(atkUser, "guess"))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong password from another /64: %d, want 401", w.Code)
	}
	w = serveFrom(srv, url, "[2001:db8:1:3::2]:4000", basicHeader(atkUser, atkPW))
	if w.Code != 200 || w.Body.String() != "app" {
		t.Fatalf("the right password from another /64: %d %q, want 200 from the app", w.Code, w.Body.String())
	}
	if n := srv.AccessFailuresForTest().Len(); n != 2 {
		t.Fatalf("the throttle tracks %d entries for two /64s", n)
	}
}

// TestBasicAuthAddressSprayBounded: wrong passwords from 20,000 distinct
// addresses (IPv4 and IPv6 /64s) at a table bounded to 6,400 entries:
// it never holds more, each address gets its own 401, and the server
// keeps serving the right password.
func TestBasicAuthAddressSprayBounded(t *testing.T) {
	server.CheapHashesForTest(t)
	srv, _, _, url := lockedTunnel(t)
	tb := srv.AccessFailuresForTest()
	const bound, spray = 6400, 20_000
	tb.SetBounds(bound, 0)
	counts := map[int]int{}
	for i := range spray {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%2 == 1 {
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 16), byte(i >> 8), 0xff, 0, 0, 0, 0, 0, 0, 1})
		}
		w := serveFrom(srv, url, netip.AddrPortFrom(ip, 4000).String(), basicHeader(atkUser, "spray"))
		counts[w.Code]++
		if i%1000 == 0 {
			if n := tb.Len(); n > bound {
				t.Fatalf("after %d addresses the table holds %d entries, over %d", i+1, n, bound)
			}
		}
	}
	if n := tb.Len(); n > bound {
		t.Fatalf("the table holds %d entries, over %d", n, bound)
	}
	t.Logf("answers: %v, table: %d", counts, tb.Len())
	if counts[http.StatusUnauthorized] == 0 || counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests] != spray {
		t.Fatalf("answers to the spray: %v", counts)
	}
	if ip := limSecondIP(t, srv.PublicAddr()); ip != "" {
		if st, _, _ := visitWith(t, limVisitorFrom(t, srv, ip), url, basicHeader(atkUser, atkPW)); st != 200 && st != http.StatusTooManyRequests {
			t.Fatalf("the right password during the spray: %d", st)
		}
	}
}

// TestBasicAuthKeepsPasswordOutOfLogs: the server's and the client's
// logs, at debug level, hold neither the password nor the encoded
// credential, after successes and failures.
func TestBasicAuthKeepsPasswordOutOfLogs(t *testing.T) {
	srv, c, _, url := lockedTunnel(t)
	vis := srv.Visitor()
	visitWith(t, vis, url, basicHeader(atkUser, atkPW))
	visitWith(t, vis, url+"/x?q=1", basicHeader(atkUser, atkPW))
	visitWith(t, vis, url, basicHeader(atkUser, atkPW+"-wrong"))
	visitWith(t, vis, url, basicHeader("mallory", atkPW))
	for range accessBurst + 2 {
		visitWith(t, vis, url, basicHeader(atkUser, "guess"))
	}
	visitWith(t, vis, url, basicHeader(atkUser, atkPW)) // 429
	secrets := []string{atkPW, base64.StdEncoding.EncodeToString([]byte(atkUser + ":" + atkPW)),
		base64.StdEncoding.EncodeToString([]byte(atkUser + ":" + atkPW + "-wrong")), fmt.Sprintf("%x", atkPW)}
	logs := map[string]string{"server": srv.Logs.String(), "client": c.Logs.String()}
	if !strings.Contains(logs["server"], "msg=request") || !strings.Contains(logs["server"], "visitor_access_failures_per_ip") {
		t.Fatalf("the server log has no request or throttle lines; is it the right log?\n%s", logs["server"])
	}
	for name, log := range logs {
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("the %s log holds the secret %q", name, s)
			}
		}
	}
}

// TestAuthorizationToApp: the Authorization header that passed the
// tunnel's basic auth does not reach the local app, unless the tunnel
// passes it on (basic_auth_forward); on a tunnel without basic auth the
// visitor's own Authorization reaches the app unchanged.
func TestAuthorizationToApp(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := &atkApp{}
	hs := startApp(t, app.ServeHTTP)
	strip := tunneltest.HTTP("strip", hs.URL)
	strip.Config.BasicAuth = []string{atkUser + ":" + atkPW}
	keep := tunneltest.HTTP("keep", hs.URL)
	keep.Config.BasicAuth = []string{atkUser + ":" + atkPW}
	keep.Config.BasicAuthForward = true
	open := tunneltest.HTTP("open", hs.URL)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), strip, keep, open)
	vis := srv.Visitor()
	right := basicHeader(atkUser, atkPW)
	for _, tc := range []struct {
		tunnel, authz, want string
	}{
		{"strip", right, ""},
		{"keep", right, right},
		{"open", "Bearer app-token-123", "Bearer app-token-123"},
		{"open", right, right},
	} {
		st, _, body := visitWith(t, vis, c.WaitURL(t, tc.tunnel), tc.authz)
		if st != 200 || body != "app" {
			t.Fatalf("%s: %d %q", tc.tunnel, st, body)
		}
		if got := strings.Join(app.headers().Values("Authorization"), ","); got != tc.want {
			t.Errorf("tunnel %s: the app got Authorization %q, want %q", tc.tunnel, got, tc.want)
		}
	}
}

// TestBasicAuthThrottleKnob: limits.basic_auth_failure_burst_per_ip
// sets how many wrong passwords an address gets before 429.
func TestBasicAuthThrottleKnob(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Limits.BasicAuthFailureBurstPerIP = 3 })
	app := &atkApp{}
	spec := tunneltest.HTTP("web", startApp(t, app.ServeHTTP).URL)
	spec.Config.BasicAuth = []string{atkUser + ":" + atkPW}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	url := c.WaitURL(t, "web")
	for i := range 3 {
		if w := serveFrom(srv, url, "192.0.2.1:1", basicHeader(atkUser, "guess")); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	w := serveFrom(srv, url, "192.0.2.1:1", basicHeader(atkUser, atkPW))
	want429(t, "past a burst of 3", w.Code, w.Header())
}
