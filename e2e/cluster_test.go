package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestClusterAnyNode: three nodes on one PostgreSQL; a client connected
// to the first serves HTTP, server-sent events, a WebSocket and a TCP
// port, and visitors get each at every node. A name is held once across
// the cluster; admin nodes lists the nodes; the cluster listener gives
// nothing to a peer without the secret.
func TestClusterAnyNode(t *testing.T) {
	c := startCluster(t, 3, false)
	app, sawFirst := clusterApp(t)
	n1 := c.nodes[0]
	web := n1.client(t, portOf(app), "--subdomain", "shop")
	web.forwarding(t)
	const host = "shop.localhost"
	lo, _ := strconv.Atoi(strings.Split(c.ports, "-")[0])
	tcpApp := tcpEchoApp(t)
	tcp := startPorthole(t, interrupted, "tcp", tcpApp, "--server", n1.wsURL(), "--remote-port", strconv.Itoa(lo+3), "--inspect-addr", "off")
	tcp.forwarding(t)
	// A bind reaches the other nodes' route maps through NOTIFY, within
	// milliseconds of the client's Forwarding line, not before it.
	c.waitName(t, host)

	for i, s := range c.nodes {
		t.Run(c.names[i], func(t *testing.T) {
			code, body, err := get(s, host, "/")
			if err != nil || code != 200 || body != "hello from the app, host "+host {
				t.Fatalf("GET at %s: %d %q %v", c.names[i], code, body, err)
			}
			readSSE(t, s, host, sawFirst)
			if got := wsEcho(t, s, host, "hi "+c.names[i]); got != "echo:hi "+c.names[i] {
				t.Fatalf("WebSocket at %s: %q", c.names[i], got)
			}
			// The node listens for the port once its route map has it.
			var got string
			pollFor(t, "the TCP port at "+c.names[i], 10*time.Second, 100*time.Millisecond, func() bool {
				got, err = tcpRoundTrip(s, lo+3, "bytes via "+c.names[i])
				return err == nil && got != ""
			})
			if got != strings.ToUpper("bytes via "+c.names[i]) {
				t.Fatalf("TCP at %s: %q %v", c.names[i], got, err)
			}
		})
	}

	// Another client asking for the name at another node is refused with
	// the final "taken" error.
	other := c.nodes[2].client(t, portOf(app), "--subdomain", "shop")
	if code := other.exit(t, 20*time.Second); code != 1 {
		t.Fatalf("second client for shop at node3: exit %d, want 1\n%s", code, other.errOut())
	}
	if !strings.Contains(other.errOut(), "in use") {
		t.Fatalf("second client's error does not say the name is in use:\n%s", other.errOut())
	}
	if code, _, _ := get(c.nodes[2], host, "/"); code != 200 {
		t.Fatalf("the name stopped answering after the refused bind: %d", code)
	}

	nodes := c.adminNodes(t)
	if len(nodes) != 3 {
		t.Fatalf("admin nodes: %+v, want 3", nodes)
	}
	for i, n := range nodes {
		want := 0
		if n.Name == "node1" {
			want = 2
		}
		if n.Name != c.names[i] || n.State != "up" || !n.Alive || n.Tunnels != want || n.Addr != c.nodes[i].clusterAddr() {
			t.Errorf("admin nodes row %d: %+v, want %s up at %s with %d tunnels", i, n, c.names[i], c.nodes[i].clusterAddr(), want)
		}
	}
	out, _, code := runPorthole(t, "admin", "nodes", "--database", c.db)
	if code != 0 || !regexp.MustCompile(`(?m)^node1\s+127\.0\.0\.11:\d+\s+up\s+\S+\s+2$`).MatchString(out) {
		t.Errorf("admin nodes table: exit %d\n%s", code, out)
	}

	// The cluster listener: TLS without the secret's certificate, plain
	// HTTP and garbage all get nothing.
	addr := n1.clusterAddr()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"porthole-link/1"}})
	if err == nil {
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = tc.Read(make([]byte, 1))
		}
		tc.Close()
	}
	if err == nil {
		t.Fatal("the cluster listener served a peer without the secret")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("plain HTTP to the cluster listener got %s", resp.Status)
	}
	if code, _, _ := get(c.nodes[1], host, "/"); code != 200 {
		t.Fatalf("node2 stopped forwarding after the refused peers: %d", code)
	}
}

// TestClusterNodeKilled: SIGKILL the node a client is connected to; the
// client reconnects to its other --server and gets its name back, and
// visitors at a third node see only the tunnel or 503 with Retry-After
// meanwhile, never 404 or 502, and the tunnel again within 15 s.
func TestClusterNodeKilled(t *testing.T) {
	c := startCluster(t, 3, false)
	app, _ := clusterApp(t)
	cl := startPorthole(t, interrupted, "http", portOf(app), "--subdomain", "kept", "--inspect-addr", "off",
		"--server", c.nodes[0].wsURL(), "--server", c.nodes[1].wsURL())
	cl.forwarding(t)
	const host = "kept.localhost"
	c.waitName(t, host)
	// Steady load at the two other nodes through the kill: every answer
	// is the tunnel's or a 503, never a 404 or a 502.
	var mu sync.Mutex
	loadStatuses := map[int]int{}
	var bad []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := c.nodes[1+w%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Paced, so that the load does not starve the other
				// packages' tests that run beside this one.
				time.Sleep(2 * time.Millisecond)
				code, body, err := get(at, host, "/")
				mu.Lock()
				loadStatuses[code]++
				if err != nil || (code != 200 && code != 503) {
					bad = append(bad, fmt.Sprintf("%s: %d %q %v", at.httpAddr, code, body, err))
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	c.nodes[0].kill(t)
	killed := time.Now()
	statuses := map[int]int{}
	var back time.Duration
	for time.Since(killed) < 15*time.Second {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.nodes[2].httpAddr+"/", nil)
		req.Host = host
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("node3 after the kill: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		switch resp.StatusCode {
		case 200:
		case 503:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		default:
			t.Fatalf("node3 answered %s after the kill (statuses so far %v)", resp.Status, statuses)
		}
		if resp.StatusCode == 200 {
			back = time.Since(killed)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("the name did not answer again within 15 s: %v", statuses)
	}
	t.Logf("answered again %v after the kill; statuses on the way %v", back.Round(time.Millisecond), statuses)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("load at node2 and node3 through the kill: %v", loadStatuses)
	if len(bad) > 0 {
		t.Fatalf("%d answers under load were neither the tunnel's nor 503; first: %v", len(bad), bad[:min(3, len(bad))])
	}
	if loadStatuses[200] < 100 {
		t.Fatalf("the load did not run: %v", loadStatuses)
	}
	if code, _, _ := get(c.nodes[1], host, "/"); code != 200 {
		t.Fatalf("node2 after the failover: %d", code)
	}
}

// TestClusterRollingRestart: three nodes restarted in turn with SIGTERM
// under steady load; the client keeps links to two of them; visitors,
// sent to the nodes that are up as a load balancer would, see no failure.
func TestClusterRollingRestart(t *testing.T) {
	c := startCluster(t, 3, false, "--shutdown-timeout", "10s")
	app, _ := clusterApp(t)
	args := []string{"http", portOf(app), "--subdomain", "steady", "--inspect-addr", "off", "--links", "2"}
	for _, s := range c.nodes {
		args = append(args, "--server", s.wsURL())
	}
	cl := startPorthole(t, interrupted, args...)
	cl.forwardingWithin(t, 1, 20*time.Second)
	const host = "steady.localhost"
	pollFor(t, "the name at every node", 10*time.Second, 100*time.Millisecond, func() bool {
		for _, s := range c.nodes {
			if code, _, _ := get(s, host, "/"); code != 200 {
				return false
			}
		}
		return true
	})

	var down atomic.Int32 // the node being restarted, +1; 0: none
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := i % len(c.nodes)
				if int(down.Load()) == n+1 {
					continue
				}
				time.Sleep(2 * time.Millisecond) // paced, as above
				code, body, err := get(c.nodes[n], host, "/")
				if err == nil && code == 200 {
					ok.Add(1)
					continue
				}
				// A node may begin to stop between the check and the
				// request; that is the balancer's race, not the tunnel's.
				if int(down.Load()) == n+1 {
					continue
				}
				failed.Add(1)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %q %v", c.names[n], code, body, err))
				mu.Unlock()
			}
		}()
	}
	for i, s := range c.nodes {
		// The balancer stops sending to the node, then it is stopped.
		down.Store(int32(i + 1))
		time.Sleep(200 * time.Millisecond)
		if code := s.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("%s exited %d on SIGTERM", c.names[i], code)
		}
		s.restart(t)
		// Back in the balancer once it serves the name again.
		pollFor(t, "the name at the restarted "+c.names[i], 20*time.Second, 100*time.Millisecond, func() bool {
			code, _, _ := get(s, host, "/")
			return code == 200
		})
		down.Store(0)
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests served, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the rolling restart; first: %v", failed.Load(), ok.Load()+failed.Load(), failures[:min(5, len(failures))])
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests served: the load did not run", ok.Load())
	}
}

// TestClusterDatabaseDown: with PostgreSQL unreachable (refusing, or
// swallowing packets so that every query waits for its timeout) the names
// already bound keep serving at every node, a new bind is refused with a
// retryable error, and once the database is back that client gets its
// name without being restarted.
func TestClusterDatabaseDown(t *testing.T) {
	c := startCluster(t, 2, true)
	app, _ := clusterApp(t)
	first := c.nodes[0].client(t, portOf(app), "--subdomain", "before")
	first.forwarding(t)
	c.waitName(t, "before.localhost")
	// Down (connections refused), then slow (a path that swallows
	// packets, as a partition does: every query waits for its timeout).
	for _, m := range []struct {
		name string
		mode adminProxyMode
	}{{"refused", proxyCut}, {"stalled", proxyStall}} {
		t.Run(m.name, func(t *testing.T) {
			c.proxy.set(m.mode)
			// Longer than a lease: the nodes fence themselves against new
			// binds, and keep serving the names they have.
			time.Sleep(8 * time.Second)
			for i, s := range c.nodes {
				if code, body, err := get(s, "before.localhost", "/"); code != 200 {
					t.Fatalf("%s with the database %s: %d %q %v", c.names[i], m.name, code, body, err)
				}
			}
			name := "during-" + m.name
			second := c.nodes[1].client(t, portOf(app), "--subdomain", name)
			second.wait(t, second.errOut, regexp.MustCompile(`registry is unavailable`), 20*time.Second)
			if second.exited() {
				t.Fatalf("the client gave up on a retryable error:\n%s", second.errOut())
			}
			c.proxy.set(proxyOpen)
			second.forwardingWithin(t, 1, 30*time.Second)
			c.waitName(t, name+".localhost")
			c.waitName(t, "before.localhost")
		})
	}
}

// TestClusterTwoLinksTwoNodes: a client with links to both nodes of a
// two-node cluster keeps its name reachable while either node is up. The
// name is held at one node at a time; when that node stops (SIGTERM) or
// dies (SIGKILL), the other serves it from the link it already has.
func TestClusterTwoLinksTwoNodes(t *testing.T) {
	c := startCluster(t, 2, false, "--shutdown-timeout", "10s")
	app, _ := clusterApp(t)
	cl := startPorthole(t, interrupted, "http", portOf(app), "--subdomain", "both", "--inspect-addr", "off", "--links", "2",
		"--server", c.nodes[0].wsURL(), "--server", c.nodes[1].wsURL())
	cl.forwardingWithin(t, 1, 20*time.Second)
	const host = "both.localhost"
	pollFor(t, "the name at both nodes", 10*time.Second, 100*time.Millisecond, func() bool {
		a, _, _ := get(c.nodes[0], host, "/")
		b, _, _ := get(c.nodes[1], host, "/")
		return a == 200 && b == 200
	})
	holder := func() int {
		for _, n := range c.adminNodes(t) {
			if n.Tunnels == 1 {
				return map[string]int{"node1": 0, "node2": 1}[n.Name]
			}
		}
		return -1
	}
	// load asks the other node until stop, and returns the statuses.
	load := func(at *serverProc, stop <-chan struct{}) map[int]int {
		got := map[int]int{}
		for {
			select {
			case <-stop:
				return got
			default:
			}
			code, _, err := get(at, host, "/")
			if err != nil {
				code = -1
			}
			got[code]++
			time.Sleep(5 * time.Millisecond)
		}
	}

	h := holder()
	if h < 0 {
		t.Fatalf("no node holds the name: %+v", c.adminNodes(t))
	}
	other := c.nodes[1-h]
	stop := make(chan struct{})
	res := make(chan map[int]int)
	go func() { res <- load(other, stop) }()
	if code := c.nodes[h].signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("holder exited %d on SIGTERM", code)
	}
	time.Sleep(time.Second)
	close(stop)
	if got := <-res; len(got) != 1 || got[200] == 0 {
		t.Fatalf("at %s while the holder stopped: statuses %v, want only 200", other.httpAddr, got)
	}
	c.nodes[h].restart(t)
	pollFor(t, "the name at the restarted node", 20*time.Second, 100*time.Millisecond, func() bool {
		code, _, _ := get(c.nodes[h], host, "/")
		return code == 200
	})

	h = holder()
	if h < 0 {
		t.Fatalf("no node holds the name after the restart: %+v", c.adminNodes(t))
	}
	other = c.nodes[1-h]
	c.nodes[h].kill(t)
	killed := time.Now()
	statuses := map[int]int{}
	var back time.Duration
	// Past the dead node's lease (10 s): the name must stay served.
	for time.Since(killed) < 13*time.Second {
		code, _, err := get(other, host, "/")
		if err != nil {
			t.Fatalf("%s after the kill: %v", other.httpAddr, err)
		}
		statuses[code]++
		if code != 200 && code != 503 {
			t.Fatalf("%s answered %d after the kill (so far %v)", other.httpAddr, code, statuses)
		}
		if code == 200 && back == 0 {
			back = time.Since(killed)
		}
		if code == 503 && back > 0 {
			t.Fatalf("503 again after the name came back (so far %v)", statuses)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("the name did not come back at the surviving node: %v", statuses)
	}
	t.Logf("after SIGKILL of the holder the other node served the name after %v; statuses %v", back.Round(time.Millisecond), statuses)
}

// TestClusterUserLimits: the per-user session and tunnel limits hold
// across the nodes, not per node.
func TestClusterUserLimits(t *testing.T) {
	c := startClusterWith(t, 2, false)
	app, _ := clusterApp(t)
	c.admin(t, "users", "add", "alice")
	c.admin(t, "users", "limits", "alice", "--max-sessions", "1")
	alice := c.admin(t, "keys", "create", "--user", "alice")
	c.admin(t, "users", "add", "bob")
	c.admin(t, "users", "limits", "bob", "--max-tunnels", "1", "--max-sessions", "5")
	bob := c.admin(t, "keys", "create", "--user", "bob")

	a1 := c.nodes[0].client(t, portOf(app), "--api-key", alice, "--subdomain", "alice-one")
	a1.forwarding(t)
	a2 := c.nodes[1].client(t, portOf(app), "--api-key", alice, "--subdomain", "alice-two")
	if code := a2.exit(t, 20*time.Second); code != 1 || !strings.Contains(a2.errOut(), "session limit reached") {
		t.Fatalf("alice's second client at node2: exit %d, want 1 with the session limit\n%s", code, a2.errOut())
	}

	b1 := c.nodes[0].client(t, portOf(app), "--api-key", bob, "--subdomain", "bob-one")
	b1.forwarding(t)
	b2 := c.nodes[1].client(t, portOf(app), "--api-key", bob, "--subdomain", "bob-two")
	if code := b2.exit(t, 20*time.Second); code != 1 || !strings.Contains(b2.errOut(), "tunnel limit reached") {
		t.Fatalf("bob's second tunnel at node2: exit %d, want 1 with the tunnel limit\n%s", code, b2.errOut())
	}
	for _, host := range []string{"alice-one.localhost", "bob-one.localhost"} {
		c.waitName(t, host)
	}
}
