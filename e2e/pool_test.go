package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPool runs load-balanced endpoint pools end to end: several
// `porthole http --pool` processes serving one name, visitors spread over
// them, members failing in the ways they fail in practice.
func TestPool(t *testing.T) {
	tcpPort := freePort(t)
	s := startPoolServer(t, "--tcp-ports", fmt.Sprintf("%d-%d", tcpPort, tcpPort))
	visitor := poolVisitor(t, s.httpAddr, "")

	// members starts one pool member per app, binding sub, and returns
	// the processes and the pool's URL.
	members := func(t *testing.T, sub string, apps []*poolApp, flags ...string) ([]*proc, string) {
		t.Helper()
		var ps []*proc
		var url string
		for _, a := range apps {
			p := s.client(t, a.port, append([]string{"--subdomain", sub, "--pool"}, flags...)...)
			u := p.forwarding(t)
			if url != "" && u != url {
				t.Fatalf("pool members got different URLs: %s and %s", url, u)
			}
			url = u
			ps = append(ps, p)
		}
		if want := "http://" + sub + ".tun.test:"; !strings.HasPrefix(url, want) {
			t.Fatalf("pool URL %s, want %s...", url, want)
		}
		return ps, url
	}
	apps3 := func(t *testing.T) []*poolApp {
		return []*poolApp{startPoolApp(t, "A"), startPoolApp(t, "B"), startPoolApp(t, "C")}
	}

	t.Run("RoundRobinAndKill", func(t *testing.T) {
		apps := apps3(t)
		ps, url := members(t, "shop", apps)

		got := poolCount(t, visitor, url, 300)
		for _, a := range apps {
			if n := got[a.name]; n < 90 || n > 110 {
				t.Fatalf("300 requests over 3 members: %v; want each within 10%% of 100", got)
			}
		}

		// Eight visitors at once, one POST with a body in four requests;
		// member C dies (SIGKILL) in the middle.
		var mu sync.Mutex
		var results []poolResult
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var r poolResult
					if (i+w)%4 == 0 {
						r = poolDo(visitor, http.MethodPost, url, strings.Repeat("x", 1000))
					} else {
						r = poolDo(visitor, http.MethodGet, url, "")
					}
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Second)
		beforeKill := apps[2].hits.Load()
		ps[2].kill(t)
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()

		var gets, posts, postFailed int
		for _, r := range results {
			switch r.method {
			case http.MethodGet:
				gets++
				if r.err != nil || r.status != 200 || (r.body != "A" && r.body != "B" && r.body != "C") {
					t.Errorf("a GET failed although idempotent requests are retried on another member: %s", r)
				}
			case http.MethodPost:
				posts++
				switch {
				case r.err == nil && r.status == 200 && strings.HasSuffix(r.body, ":1000"):
				case r.err == nil && r.status == http.StatusBadGateway:
					postFailed++
				default:
					t.Errorf("a POST got neither its answer nor 502: %s", r)
				}
			}
		}
		t.Logf("under load: %d GETs, %d POSTs (%d got 502 from the dying member); C had served %d before it was killed", gets, posts, postFailed, beforeKill)
		if gets < 50 || posts < 10 || beforeKill < 5 {
			t.Fatalf("too little load to mean anything: %d GETs, %d POSTs, %d on C before the kill", gets, posts, beforeKill)
		}
		if postFailed > 8 {
			t.Errorf("%d POSTs failed; only those in flight on the killed member may", postFailed)
		}

		// C's share has moved, evenly, to A and B.
		got = poolCount(t, visitor, url, 100)
		if got["C"] != 0 || got["A"] < 40 || got["B"] < 40 {
			t.Fatalf("after C died: %v; want A and B about 50 each", got)
		}
		// The URL keeps answering while one member is left.
		ps[1].kill(t)
		if got := poolCount(t, visitor, url, 20); got["A"] != 20 {
			t.Fatalf("with A left alone: %v", got)
		}
	})

	t.Run("RefusingAppTakenOut", func(t *testing.T) {
		apps := apps3(t)
		_, url := members(t, "refuse", apps)
		poolCount(t, visitor, url, 30)
		cHits := apps[2].hits.Load()
		apps[2].refuse()
		// A POST cannot be retried: of three in a row, the one that lands
		// on C gets 502 and reaches no app; C leaves the rotation at once.
		before := apps[0].hits.Load() + apps[1].hits.Load()
		var posts []string
		for range 3 {
			r := poolDo(visitor, http.MethodPost, url, "body")
			if r.err != nil {
				t.Fatalf("POST with C refusing: %v", r.err)
			}
			posts = append(posts, fmt.Sprint(r.status))
		}
		if slices.Sort(posts); strings.Join(posts, " ") != "200 200 502" {
			t.Fatalf("three POSTs with C refusing: %v; want one 502", posts)
		}
		if n := apps[0].hits.Load() + apps[1].hits.Load() - before; n != 2 {
			t.Fatalf("the apps saw %d of the POSTs, want 2", n)
		}
		// C's share goes evenly to A and B.
		got := poolCount(t, visitor, url, 90)
		if got["C"] != 0 || got["A"] < 36 || got["B"] < 36 {
			t.Fatalf("with C's app refusing: %v; want A and B about 45 each", got)
		}
		// After its time out of the rotation C is tried again: whichever
		// idempotent request without a body lands on it is retried on
		// another member, so every one succeeds.
		retries := func() int {
			return s.count(`"msg":"retrying on another pool member","host":"refuse.tun.test"`)
		}
		retried := retries()
		methods := []string{http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions, http.MethodPut}
		i := 0
		waitFor(t, "C tried again and the request retried", 20*time.Second, func() bool {
			for range 10 {
				m := methods[i%len(methods)]
				i++
				if r := poolDo(visitor, m, url, ""); r.err != nil || r.status != 200 {
					t.Fatalf("%s with C refusing: %s", m, r)
				}
			}
			return retries() > retried
		})
		if apps[2].hits.Load() != cHits {
			t.Fatal("C's app counted requests while refusing")
		}
		// Once C's app is back it gets visitors again (after its time out
		// of the rotation).
		apps[2].restart(t)
		waitFor(t, "C back in rotation", 15*time.Second, func() bool {
			return poolCount(t, visitor, url, 6)["C"] > 0
		})
	})

	t.Run("LeastStreams", func(t *testing.T) {
		a, b := startPoolApp(t, "A"), startPoolApp(t, "B")
		_, url := members(t, "least", []*poolApp{a}, "--pool-strategy", "least-streams")
		// A alone: a burst leaves idle streams in A's pool, then three
		// long requests stay open on it.
		var burst sync.WaitGroup
		for range 16 {
			burst.Add(1)
			go func() { defer burst.Done(); poolDo(visitor, http.MethodGet, url, "") }()
		}
		burst.Wait()
		// slow holds n requests open until the apps release them; wait
		// returns the failed ones.
		var slowMu sync.Mutex
		var slowFailed []poolResult
		slow := func(n int) (wait func() []poolResult) {
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r := poolDo(visitor, http.MethodGet, url+"/slow", ""); r.err != nil || r.status != 200 {
						slowMu.Lock()
						slowFailed = append(slowFailed, r)
						slowMu.Unlock()
					}
				}()
			}
			t.Cleanup(func() { a.releaseSlow(); b.releaseSlow(); wg.Wait() })
			return func() []poolResult {
				wg.Wait()
				slowMu.Lock()
				defer slowMu.Unlock()
				return slowFailed
			}
		}
		held := slow(3)
		waitFor(t, "three requests held on A", 10*time.Second, func() bool { return a.held.Load() == 3 })
		// B joins (the first member's strategy holds for the pool).
		members(t, "least", []*poolApp{b})
		if got := poolCount(t, visitor, url, 20); got["B"] != 20 {
			t.Fatalf("A holds 3 open requests, B none: %v; want all on B", got)
		}
		a.releaseSlow()
		if failed := held(); len(failed) > 0 {
			t.Fatalf("held requests failed: %v", failed)
		}

		// Idle streams left in a member's pool are not load: with A idle
		// and two requests open, each new visitor goes to a member with
		// the fewest requests in progress.
		held = slow(2)
		waitFor(t, "two requests held", 10*time.Second, func() bool { return a.held.Load()+b.held.Load() == 2 })
		ha, hb := a.held.Load(), b.held.Load()
		got := poolCount(t, visitor, url, 20)
		switch {
		case ha < hb && got["A"] != 20, hb < ha && got["B"] != 20:
			t.Fatalf("open requests A=%d B=%d, and 20 new visitors went %v; want all on the less busy member", ha, hb, got)
		case ha == hb && (got["A"] == 0 || got["B"] == 0):
			t.Fatalf("open requests A=%d B=%d, and 20 new visitors went %v; want them spread over equally busy members", ha, hb, got)
		}
		a.releaseSlow()
		b.releaseSlow()
		if failed := held(); len(failed) > 0 {
			t.Fatalf("held requests failed: %v", failed)
		}
	})

	t.Run("HealthCheck", func(t *testing.T) {
		apps := apps3(t)
		// Checks time out after the interval: 2s leaves room on a busy
		// machine, where a spurious failure would skew the counts below.
		_, url := members(t, "healthy", apps, "--health-path", "/ok", "--health-interval", "2s")
		got := poolCount(t, visitor, url, 30)
		if got["A"] < 5 || got["B"] < 5 || got["C"] < 5 {
			t.Fatalf("all healthy: %v", got)
		}
		apps[2].healthy.Store(false)
		waitFor(t, "unhealthy C out of rotation", 15*time.Second, func() bool {
			return poolCount(t, visitor, url, 9)["C"] == 0
		})
		if got := poolCount(t, visitor, url, 60); got["C"] != 0 || got["A"] < 24 || got["B"] < 24 {
			t.Fatalf("with C unhealthy: %v; want A and B only, about 30 each", got)
		}
		apps[2].healthy.Store(true)
		waitFor(t, "C back after recovering", 15*time.Second, func() bool {
			return poolCount(t, visitor, url, 6)["C"] > 0
		})
	})

	t.Run("StartsUnhealthy", func(t *testing.T) {
		// A member whose app fails its check from the start is out of the
		// rotation as soon as it is bound, not one interval later.
		a, b := startPoolApp(t, "A"), startPoolApp(t, "B")
		b.healthy.Store(false)
		_, url := members(t, "late", []*poolApp{a, b}, "--health-path", "/ok", "--health-interval", "60s")
		waitFor(t, "B out of rotation", 10*time.Second, func() bool {
			return poolCount(t, visitor, url, 6)["B"] == 0
		})
	})

	t.Run("VisitorErrorsKeepMembers", func(t *testing.T) {
		// A visitor whose request body breaks off is the visitor's
		// failure, not the member's: it must not take members out.
		a, b := startPoolApp(t, "A"), startPoolApp(t, "B")
		_, url := members(t, "sturdy", []*poolApp{a, b})
		host := strings.TrimPrefix(url, "http://")
		for range 4 {
			c, err := net.Dial("tcp", s.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\nonly ten b", host)
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
		if got := poolCount(t, visitor, url, 20); got["A"] != 10 || got["B"] != 10 {
			t.Fatalf("after visitors broke off their requests: %v; want both members in rotation", got)
		}
	})

	t.Run("ConfigFile", func(t *testing.T) {
		a, b := startPoolApp(t, "A"), startPoolApp(t, "B")
		cfg := filepath.Join(t.TempDir(), "porthole.toml")
		writeAccFile(t, cfg, fmt.Sprintf(`
[tunnels.web]
proto = "http"
addr = %q
subdomain = "cfgpool"
pool = true
pool_strategy = "round-robin"
health_path = "/ok"
health_interval = "2s"
`, a.port))
		p := startPorthole(t, interrupted, "start", "--config", cfg, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0")
		url := p.forwarding(t)
		members(t, "cfgpool", []*poolApp{b})
		if got := poolCount(t, visitor, url, 20); got["A"] < 5 || got["B"] < 5 {
			t.Fatalf("a member from a config file and one from flags: %v", got)
		}
		a.healthy.Store(false)
		waitFor(t, "unhealthy A out of rotation", 15*time.Second, func() bool {
			return poolCount(t, visitor, url, 6)["A"] == 0
		})
	})

	t.Run("Conflicts", func(t *testing.T) {
		app := startPoolApp(t, "A")
		// A name held without --pool cannot be joined by a pool member...
		s.client(t, app.port, "--subdomain", "solo").forwarding(t)
		s.client(t, app.port, "--subdomain", "solo", "--pool").refused(t, `solo\.tun\.test.*without --pool`)
		// ...nor a pool's name taken by a client without --pool.
		members(t, "team", []*poolApp{app})
		s.client(t, app.port, "--subdomain", "team").refused(t, `team\.tun\.test.*served by a pool`)
		// Members must agree on who may visit.
		s.client(t, app.port, "--subdomain", "team", "--pool", "--basic-auth", "u:p").refused(t, `same access rules`)
		// A pool needs a name its members share.
		s.client(t, app.port, "--pool").refused(t, `pool needs a name`)
	})

	t.Run("TCP", func(t *testing.T) {
		addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(tcpPort))
		e1, e2 := startPoolEcho(t, "one"), startPoolEcho(t, "two")
		var ps []*proc
		for _, e := range []*poolEcho{e1, e2} {
			p := startPorthole(t, interrupted, "tcp", e.port, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0",
				"--remote-port", fmt.Sprint(tcpPort), "--pool")
			if u := p.forwarding(t); u != "tcp://tun.test:"+fmt.Sprint(tcpPort) {
				t.Fatalf("tcp pool member URL %s", u)
			}
			ps = append(ps, p)
		}
		got := map[string]int{}
		for range 20 {
			g, err := poolTCPGreeting(addr, "")
			if err != nil {
				t.Fatalf("connection through the tcp pool: %v (after %v)", err, got)
			}
			got[g]++
		}
		if got["one"] != 10 || got["two"] != 10 {
			t.Fatalf("20 connections over two members: %v", got)
		}
		// A plain client cannot take the pool's port.
		startPorthole(t, interrupted, "tcp", e1.port, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0",
			"--remote-port", fmt.Sprint(tcpPort)).refused(t, `port \d+.*served by a pool`)

		// The server logs "client disconnected" with the session's tunnel
		// count; the killed member is the next such line with one tunnel.
		gone := func() int { return s.count(`"msg":"client disconnected","session":"`) - s.count(`"tunnels":0`) }
		disconnects := gone()
		ps[1].kill(t)
		waitFor(t, "server noticing the killed member", 10*time.Second, func() bool { return gone() > disconnects })
		for range 10 {
			if g, err := poolTCPGreeting(addr, ""); err != nil || g != "one" {
				t.Fatalf("with member two gone: %q %v", g, err)
			}
		}
	})
}

// TestPoolUsers: pools on a server with users and API keys. One user's
// clients may pool with several keys; another user's client may not join.
func TestPoolUsers(t *testing.T) {
	s := startIDServer(t, t.TempDir(), "")
	s.mustAdmin(t, "users", "add", "alice")
	s.mustAdmin(t, "users", "add", "bob")
	alice1 := s.mustAdmin(t, "keys", "create", "--user", "alice", "--name", "one")
	alice2 := s.mustAdmin(t, "keys", "create", "--user", "alice", "--name", "two")
	bob := s.mustAdmin(t, "keys", "create", "--user", "bob")
	a, b, c := startPoolApp(t, "A"), startPoolApp(t, "B"), startPoolApp(t, "C")

	url := s.client(t, a.port, "--api-key", alice1, "--subdomain", "shop", "--pool").forwarding(t)
	if u := s.client(t, b.port, "--api-key", alice2, "--subdomain", "shop", "--pool").forwarding(t); u != url {
		t.Fatalf("alice's second member got %s, want %s", u, url)
	}
	visitor := poolVisitor(t, s.httpAddr, "")
	if got := poolCount(t, visitor, url, 20); got["A"] != 10 || got["B"] != 10 {
		t.Fatalf("alice's two members: %v", got)
	}

	for _, flags := range [][]string{
		{"--subdomain", "shop", "--pool"},
		{"--subdomain", "shop", "--pool", "--pool-strategy", "least-streams"},
		{"--subdomain", "shop"},
	} {
		p := s.client(t, c.port, append([]string{"--api-key", bob}, flags...)...)
		p.refused(t, `shop\.tun\.test is in use by another user`)
		if code := p.exit(t, time.Second); code != 1 {
			t.Fatalf("bob %v: exit %d, want 1", flags, code)
		}
		if strings.Contains(p.out(), "Forwarding") {
			t.Fatalf("bob %v got a Forwarding line:\n%s", flags, p.out())
		}
	}
	if got := poolCount(t, visitor, url, 20); got["A"] != 10 || got["B"] != 10 || c.hits.Load() != 0 {
		t.Fatalf("after bob's attempts: %v, bob's app saw %d", got, c.hits.Load())
	}
}
