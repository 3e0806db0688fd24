package e2e

// Limits that need user accounts, and abuse of a whole server, tested
// with the built binary: tunnels and sessions per user, per-user overrides
// set with `porthole admin users limits`, the failed-authentication
// throttle, and a slowloris run and a bad-credential handshake flood
// against a server that must keep serving with bounded memory.

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/tunneltest"
)

const limitsConfig = `
[auth]
# Refusals in these tests come from one address; the throttle has its own test.
failed_auth_burst = 1000

[limits]
requests_per_second = 2
burst = 3
max_tunnels_per_user = 1
max_sessions_per_user = 1
`

// TestLimitsPerUser: the server's [limits] per user, and per-user
// overrides (set with porthole admin users limits) taking precedence.
func TestLimitsPerUser(t *testing.T) {
	s := limStartServer(t, limitsConfig)
	app := limStartApp(t)

	t.Run("SessionsPerUser", func(t *testing.T) {
		key := s.limUserKey(t, "alice")
		first := s.client(t, app.port, "--api-key", key)
		first.forwarding(t)
		second := s.client(t, app.port, "--api-key", key)
		second.refused(t, `session limit reached: user alice has 1 of 1 sessions open`)
		if code := second.exit(t, time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		if n := s.limitHits(t, "user_sessions"); n != 1 {
			t.Fatalf("user_sessions hits %v, want 1 (the client retried a final error?)", n)
		}
		first.stop()
	})

	t.Run("TunnelsPerUser", func(t *testing.T) {
		// Sessions unlimited for bob; tunnels at the server's default of 1.
		key := s.limUserKey(t, "bob", "--max-sessions", "0")
		first := s.client(t, app.port, "--api-key", key)
		first.forwarding(t)
		second := s.client(t, app.port, "--api-key", key)
		second.refused(t, `tunnel limit reached: 1 of 1 tunnels in use`)
		if code := second.exit(t, time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		if n := s.limitHits(t, "user_tunnels"); n != 1 {
			t.Fatalf("user_tunnels hits %v, want 1", n)
		}
		first.stop()
	})

	t.Run("OverridesTakePrecedence", func(t *testing.T) {
		key := s.limUserKey(t, "carol", "--max-tunnels", "3", "--max-sessions", "3", "--requests-per-second", "0")
		out := s.mustAdmin(t, "users", "limits", "carol")
		if out != "carol: max_tunnels=3 max_sessions=3 requests_per_second=0" {
			t.Fatalf("users limits shows %q", out)
		}
		var hosts []string
		for range 3 {
			hosts = append(hosts, hostOfURL(t, s.client(t, app.port, "--api-key", key).forwarding(t)))
		}
		// No request limit for carol: a burst far past the default passes.
		vis := s.limVisitor(t, "")
		before := app.hits.Load()
		for i := range 30 {
			code, _, body, err := limGet(vis, "http://"+hosts[i%3]+"/")
			if err != nil || code != 200 || body != "limits app" {
				t.Fatalf("carol's request %d: %d %v %q", i+1, code, err, body)
			}
		}
		if got := app.hits.Load() - before; got != 30 {
			t.Fatalf("the app saw %d of carol's 30 requests", got)
		}
	})

	t.Run("DefaultRequestRate", func(t *testing.T) {
		key := s.limUserKey(t, "dave")
		c := s.client(t, app.port, "--api-key", key)
		host := hostOfURL(t, c.forwarding(t))
		vis := s.limVisitor(t, "")
		before := app.hits.Load()
		hitsBefore := s.limitHits(t, "tunnel_requests_per_second")
		ok, refused := 0, 0
		start := time.Now()
		for range 20 {
			code, retry, body, err := limGet(vis, "http://"+host+"/")
			if err != nil {
				t.Fatal(err)
			}
			switch code {
			case 200:
				ok++
			case 429:
				refused++
				if retry == "" || !strings.Contains(body, "limit of 2 per second") {
					t.Fatalf("429 with Retry-After %q and body %q", retry, body)
				}
			default:
				t.Fatalf("status %d", code)
			}
		}
		if most := 3 + int(2*time.Since(start).Seconds()) + 1; ok < 3 || ok > most {
			t.Fatalf("%d of 20 passed; want the burst of 3, at most %d", ok, most)
		}
		if got := app.hits.Load() - before; got != int64(ok) {
			t.Fatalf("the app saw %d requests, %d passed: a refused request reached it", got, ok)
		}
		if n := s.limitHits(t, "tunnel_requests_per_second") - hitsBefore; n != float64(refused) {
			t.Fatalf("metric rose by %v, want %d", n, refused)
		}
		c.stop()
	})

	t.Run("BandwidthSharedByUser", func(t *testing.T) {
		// No bandwidth limit on the server; ivan's own is 4 MiB/s, shared
		// by his two clients: 2 x 8 MiB take about 4 s, not 2.
		key := s.limUserKey(t, "ivan", "--max-sessions", "2", "--max-tunnels", "2", "--bandwidth", strconv.Itoa(4<<20))
		big := limStartBigApp(t, 8<<20)
		var hosts []string
		for range 2 {
			hosts = append(hosts, hostOfURL(t, s.client(t, big, "--api-key", key).forwarding(t)))
		}
		vis := s.limVisitor(t, "")
		vis.Timeout = time.Minute
		start := time.Now()
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := vis.Get("http://" + h + "/")
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 8<<20 {
					t.Errorf("downloaded %d bytes: %v", n, err)
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("2 x 8 MiB for one user at 4 MiB/s: %v", took.Round(time.Millisecond))
		// (16 MiB - the two buckets' 0.8 MiB) / 4 MiB/s: at least 3.8 s.
		if took < 3500*time.Millisecond {
			t.Fatalf("2 x 8 MiB took %v: the user's limit is not shared by the user's clients", took)
		}
		if s.limitHits(t, "user_bandwidth") == 0 {
			t.Fatal("shaping not counted")
		}
	})

	t.Run("OverrideBackToDefault", func(t *testing.T) {
		s.mustAdmin(t, "users", "limits", "carol", "--max-tunnels", "default", "--max-sessions", "default", "--requests-per-second", "default")
		if out := s.mustAdmin(t, "users", "limits", "carol"); out != "carol: server defaults" {
			t.Fatalf("users limits shows %q", out)
		}
	})
}

// TestLimitsFailedAuthThrottle: after failed_auth_burst failures an
// address is refused with 429 and a wait before its credentials are
// looked at; a client with a good key from that address backs off for
// the wait and then connects. The refusals are counted and do not flood
// the log.
func TestLimitsFailedAuthThrottle(t *testing.T) {
	s := limStartServer(t, "[auth]\nfailed_auth_burst = 3\nfailed_auth_per_minute = 60\n")
	app := limStartApp(t)
	key := s.limUserKey(t, "erin")
	bad := auth.APIKeyPrefix + strings.Repeat("B", 43)
	var codes []int
	for range 200 {
		code, retry, refusal, err := limHandshake(s.tunnelAddr, "", bad)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
		if code == 429 && (retry == "" || refusal == nil || refusal.Code != protocol.CodeRateLimited || refusal.Final) {
			t.Fatalf("429 with Retry-After %q and %+v, want a retryable rate_limited", retry, refusal)
		}
	}
	if fmt.Sprint(codes[:4]) != "[401 401 401 429]" {
		t.Fatalf("statuses %v, want three 401 then 429", codes[:4])
	}
	// At 60 a minute, a token comes back each second: over the run a few
	// more 401s, the rest refused.
	n429 := strings.Count(fmt.Sprint(codes), "429")
	if n429 < 150 {
		t.Fatalf("%d of 200 attempts throttled", n429)
	}
	if n := s.limitHits(t, "auth_failures_per_ip"); n != float64(n429) {
		t.Fatalf("auth_failures_per_ip hits %v, want %d", n, n429)
	}
	if n := s.logLines("client refused", ""); n > 200-n429+5 {
		t.Fatalf("%d 'client refused' log lines for %d failures and %d throttled attempts: the throttled ones flood the log", n, 200-n429, n429)
	}
	if n := s.logLines("limit hit", "auth_failures_per_ip"); n < 1 || n > 3 {
		t.Fatalf("%d 'limit hit' lines for the throttle, want 1 to 3", n)
	}
	// Out of allowance, a good key is refused too, as retryable: the
	// client waits and gets in.
	c := s.client(t, app.port, "--api-key", key)
	c.forwarding(t)
	if !strings.Contains(c.errOut(), "too many failed authentication attempts") {
		t.Fatalf("the client did not show why it waited:\n%s", c.errOut())
	}
}

// limRSS reads the server's resident memory and Go heap in use.
func (s *serverProc) limMem(t *testing.T) (rss, heap float64) {
	return s.metric(t, "process_resident_memory_bytes"), s.metric(t, "go_memstats_heap_inuse_bytes")
}

// TestLimitsAbuseLeavesServerServing: hundreds of connections trickling
// headers (slowloris) and a flood of tunnel handshakes with bad
// credentials leave the server serving visitors and clients, within a
// memory bound, and every connection they opened is closed in the end.
//
// The bound: a held visitor connection costs the server a goroutine
// (8 KiB stack to start) and net/http's 4 KiB read and write buffers, and
// a refused handshake nothing once answered; 400 connections at the
// generous 64 KiB each are 25 MiB. Growth beyond 64 MiB of RSS would mean
// per-connection state that a flood can grow without bound.
func TestLimitsAbuseLeavesServerServing(t *testing.T) {
	s := limStartServer(t, "[limits]\nhandshakes_per_second_per_ip = 20\nhandshake_burst_per_ip = 40\n", "--read-header-timeout", "8s")
	app := limStartApp(t)
	key := s.limUserKey(t, "frank")
	c := s.client(t, app.port, "--api-key", key)
	host := hostOfURL(t, c.forwarding(t))
	ips := limLoopbackIPs(s.tunnelAddr, 4)
	vis := s.limVisitor(t, "")
	serves := func(what string) {
		t.Helper()
		for i := range 20 {
			code, _, body, err := limGet(vis, "http://"+host+"/")
			if err != nil || code != 200 || body != "limits app" {
				t.Fatalf("%s: request %d got %d %v %q", what, i+1, code, err, body)
			}
		}
	}
	serves("before")
	rss0, heap0 := s.limMem(t)
	goroutines0 := s.metric(t, "go_goroutines")

	// Slowloris: 400 connections, each sending a header line a second and
	// never finishing.
	const slow = 400
	var slowConns []net.Conn
	for i := range slow {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ips[i%len(ips)])}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", s.httpAddr)
		if err != nil {
			t.Fatalf("slowloris connection %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n", host)
		slowConns = append(slowConns, conn)
	}
	stopTrickle := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Add(1)
	go func() {
		defer trickle.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stopTrickle:
				return
			case <-tick.C:
			}
			for _, conn := range slowConns {
				conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				fmt.Fprintf(conn, "X-Slow-%d: %d\r\n", n, n)
			}
		}
	}()

	// Meanwhile, a flood of handshakes with bad credentials from several
	// addresses, 16 at a time.
	var refused, other atomic.Int64
	var flood sync.WaitGroup
	start := time.Now()
	for w := range 16 {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for i := range 125 {
				key := auth.APIKeyPrefix + fmt.Sprintf("%043d", w*1000+i)
				code, _, _, err := limHandshake(s.tunnelAddr, ips[(w+i)%len(ips)], key)
				switch {
				case err != nil:
					other.Add(1)
				case code == 401 || code == 429:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	serves("during the abuse")
	flood.Wait()
	floodTook := time.Since(start)
	serves("after the handshake flood, slowloris still running")
	rss1, heap1 := s.limMem(t)
	if refused.Load() != 2000 || other.Load() != 0 {
		t.Fatalf("handshake flood: %d refused, %d other outcomes; want all 2000 refused", refused.Load(), other.Load())
	}
	// A new client still gets in (from 127.0.0.1, which the flood did not
	// use where other loopback addresses exist; else after a backoff).
	c2 := s.client(t, app.port, "--api-key", s.limUserKey(t, "grace"))
	host2 := hostOfURL(t, c2.forwarding(t))
	if code, _, _, err := limGet(vis, "http://"+host2+"/"); err != nil || code != 200 {
		t.Fatalf("new client's tunnel: %d %v", code, err)
	}
	t.Logf("2000 bad handshakes in %v; RSS %.1f -> %.1f MiB, heap in use %.1f -> %.1f MiB, with %d slowloris connections open",
		floodTook.Round(time.Millisecond), rss0/(1<<20), rss1/(1<<20), heap0/(1<<20), heap1/(1<<20), slow)
	if grow := rss1 - rss0; grow > 64<<20 {
		t.Fatalf("RSS grew by %.1f MiB under abuse, bound 64 MiB", grow/(1<<20))
	}
	if grow := heap1 - heap0; grow > 48<<20 {
		t.Fatalf("Go heap in use grew by %.1f MiB under abuse, bound 48 MiB", grow/(1<<20))
	}
	// The read-header timeout closes the slowloris connections however
	// long they keep trickling.
	closed := 0
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1024)
	for _, conn := range slowConns {
		conn.SetReadDeadline(deadline)
		if _, err := conn.Read(buf); err != nil && !limIsTimeout(err) {
			closed++
		}
	}
	close(stopTrickle)
	trickle.Wait()
	if closed != slow {
		t.Fatalf("%d of %d slowloris connections closed by the server", closed, slow)
	}
	serves("after")
	// Nothing is left: goroutines return to about where they were.
	deadline = time.Now().Add(15 * time.Second)
	for {
		g := s.metric(t, "go_goroutines")
		if g <= goroutines0+30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v goroutines after the abuse ended, %v before", g, goroutines0)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func limIsTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestLimitsReconnectAtUserLimit: a user at max_tunnels_per_user whose
// connection drops on the client's side only (the server still holds the
// stale session) reconnects and takes its tunnel back, instead of being
// told, as a final error, that it has too many tunnels.
func TestLimitsReconnectAtUserLimit(t *testing.T) {
	s := limStartServer(t, "[limits]\nmax_tunnels_per_user = 1\nmax_sessions_per_user = 1\n[tunnel]\nheartbeat = \"2s\"\n")
	app := limStartApp(t)
	key := s.limUserKey(t, "heidi")
	proxy := tunneltest.NewProxy(t, s.tunnelAddr)
	c := startPorthole(t, interrupted, "http", app.port, "--server", "ws://"+proxy.Addr(), "--inspect-addr", "127.0.0.1:0", "--api-key", key)
	host := hostOfURL(t, c.forwarding(t))
	vis := s.limVisitor(t, "")
	if code, _, _, err := limGet(vis, "http://"+host+"/"); err != nil || code != 200 {
		t.Fatalf("before: %d %v", code, err)
	}
	proxy.CutClientSide()
	// Back within a few seconds, well before the server could find the
	// stale session dead (three heartbeats). Visitors wait for the rebind:
	// a request sent before it would go to the stale session.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(c.errOut(), `msg="tunnel online"`) < 2 {
		select {
		case <-c.done:
			t.Fatalf("client exited after its connection dropped:\n%s", c.errOut())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("client not back online:\n%s", c.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _, err := limGet(vis, "http://"+host+"/"); err != nil || code != 200 {
		t.Fatalf("after the reconnect: %d %v", code, err)
	}
	if strings.Contains(s.errOut(), "client silent") {
		t.Fatal("the stale session was already gone: this run did not test a takeover")
	}
	if n := s.limitHits(t, "user_tunnels") + s.limitHits(t, "user_sessions"); n != 0 {
		t.Fatalf("%v user limit hits for a client taking its own tunnel back", n)
	}
}
