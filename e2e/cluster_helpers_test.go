package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// testCluster is n `porthole server` processes on one PostgreSQL schema
// of their own. Node i listens on 127.0.0.(11+i), so that every node can
// listen on the same TCP tunnel ports, as nodes on separate hosts do.
type testCluster struct {
	db     string // the nodes' database URL (through proxy when set)
	secret string // the secret file
	ports  string // the TCP tunnel range
	proxy  *adminProxy
	nodes  []*serverProc
	names  []string
}

// startCluster starts n nodes without authentication; withProxy puts a
// proxy the test can cut between the nodes and PostgreSQL.
func startCluster(t *testing.T, n int, withProxy bool, extra ...string) *testCluster {
	t.Helper()
	return startClusterWith(t, n, withProxy, append([]string{"--no-auth"}, extra...)...)
}

// startClusterWith is startCluster with the nodes' flags as given:
// without --no-auth they authenticate clients against the database.
func startClusterWith(t *testing.T, n int, withProxy bool, extra ...string) *testCluster {
	t.Helper()
	base := postgresURL(t, "the cluster tests")
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	schema := fmt.Sprintf("porthole_cluster_e2e_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("PORTHOLE_TEST_POSTGRES: %v", err)
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{}
	if withProxy {
		c.proxy = startAdminProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
		u.Host = c.proxy.addr()
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	c.db = u.String()

	c.secret = filepath.Join(t.TempDir(), "cluster.secret")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(c.secret, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lo := 30000 + int(time.Now().UnixNano()%20000)
	c.ports = fmt.Sprintf("%d-%d", lo, lo+9)
	for i := range n {
		c.nodes = append(c.nodes, c.startNode(t, i, extra...))
	}
	return c
}

func (c *testCluster) startNode(t *testing.T, i int, extra ...string) *serverProc {
	t.Helper()
	ip := fmt.Sprintf("127.0.0.%d", 11+i)
	name := fmt.Sprintf("node%d", i+1)
	c.names = append(c.names, name)
	s := &serverProc{atEnd: interrupted, healthy: 20 * time.Second, dataDir: t.TempDir()}
	var err error
	for range 5 {
		at := func() string {
			ln, err := net.Listen("tcp", ip+":0")
			if err != nil {
				t.Fatalf("loopback address %s: %v", ip, err)
			}
			defer ln.Close()
			return ln.Addr().String()
		}
		s.httpAddr, s.tunnelAddr, s.adminAddr = at(), at(), at()
		clusterAddr := at()
		s.args = append([]string{"server", "--log-format", "json", "--domain", "localhost",
			"--http-addr", s.httpAddr, "--tunnel-addr", s.tunnelAddr, "--admin-addr", s.adminAddr,
			"--data-dir", s.dataDir, "--database", c.db, "--tcp-ports", c.ports,
			"--cluster-addr", clusterAddr, "--cluster-secret-file", c.secret, "--node-name", name}, extra...)
		if err = s.run(t); err == nil {
			return s
		}
	}
	t.Fatalf("node %s did not start: %v", name, err)
	return nil
}

// waitName waits until every node answers host with 200: a bind reaches
// the other nodes' route maps through NOTIFY, a few milliseconds after the
// client prints its URL.
func (c *testCluster) waitName(t *testing.T, host string) {
	t.Helper()
	pollFor(t, host+" at every node", 10*time.Second, 20*time.Millisecond, func() bool {
		for _, s := range c.nodes {
			if code, _, _ := get(s, host, "/"); code != 200 {
				return false
			}
		}
		return true
	})
}

// clusterAddr reads a node's cluster listener from its command line.
func (s *serverProc) clusterAddr() string {
	for i, a := range s.args {
		if a == "--cluster-addr" {
			return s.args[i+1]
		}
	}
	return ""
}

// get asks node s for path on host and returns the status and body.
func get(s *serverProc, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+s.httpAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// clusterApp serves /, /sse (three events, the second only after the
// visitor has seen the first) and /ws (a WebSocket echo).
func clusterApp(t *testing.T) (addr string, sawFirst chan struct{}) {
	t.Helper()
	sawFirst = make(chan struct{}, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app, host %s", r.Host)
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-sawFirst:
		case <-time.After(10 * time.Second):
			fmt.Fprint(w, "data: too-late\n\n")
			return
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, b, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if ws.Write(r.Context(), typ, append([]byte("echo:"), b...)) != nil {
				return
			}
		}
	})
	return serveApp(t, &http.Server{Handler: mux}), sawFirst
}

// readSSE reads events from node s's /sse, telling the app after the
// first one; it fails unless the first arrives before the second is sent.
func readSSE(t *testing.T, s *serverProc, host string, sawFirst chan<- struct{}) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.httpAddr+"/sse", nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("SSE at %s: %v", s.httpAddr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, d)
			if d == "one" {
				sawFirst <- struct{}{}
			}
		}
	}
	if strings.Join(events, ",") != "one,two" {
		t.Fatalf("SSE at %s: events %v, want one,two (the first unbuffered)", s.httpAddr, events)
	}
}

// wsEcho sends msg over a WebSocket through node s and returns the answer.
func wsEcho(t *testing.T, s *serverProc, host, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.httpAddr+"/ws", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatalf("WebSocket at %s: %v", s.httpAddr, err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("WebSocket echo at %s: %v", s.httpAddr, err)
	}
	return string(b)
}

// tcpEchoApp answers each connection's bytes in upper case until EOF.
func tcpEchoApp(t *testing.T) string {
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
				b, _ := io.ReadAll(c)
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// tcpRoundTrip sends msg to port on node s's host, half-closes, and
// returns what comes back.
func tcpRoundTrip(s *serverProc, port int, msg string) (string, error) {
	host, _, _ := net.SplitHostPort(s.httpAddr)
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// nodeInfo is a row of `porthole admin nodes --json`.
type nodeInfo struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	State   string `json:"state"`
	Alive   bool   `json:"alive"`
	Tunnels int    `json:"tunnels"`
}

// admin runs `porthole admin ARGS` on the cluster's database and returns
// its last line of output; it must succeed.
func (c *testCluster) admin(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runPorthole(t, append(append([]string{"admin"}, args...), "--database", c.db)...)
	if code != 0 {
		t.Fatalf("porthole admin %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return lastLine(out)
}

func (c *testCluster) adminNodes(t *testing.T) []nodeInfo {
	t.Helper()
	out, errOut, code := runPorthole(t, "admin", "nodes", "--json", "--database", c.db)
	if code != 0 {
		t.Fatalf("admin nodes: exit %d\n%s%s", code, out, errOut)
	}
	var nodes []nodeInfo
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("admin nodes --json: %v\n%s", err, out)
	}
	return nodes
}
