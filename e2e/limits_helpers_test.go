package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/protocol"
)

// limStartServer starts a server (the built binary, auth on) with
// configTOML on loopback ports; its admin listener serves /metrics.
func limStartServer(t *testing.T, configTOML string, extra ...string) *serverProc {
	t.Helper()
	s := startIDServer(t, t.TempDir(), configTOML, extra...)
	if s.adminAddr == "" {
		t.Fatalf("no admin address in the start line:\n%s", s.errOut())
	}
	return s
}

// metric reads one sample (`name` or `name{label="v"}`) from /metrics.
func (s *serverProc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not found", series)
	return 0
}

// limitHits reads porthole_limit_hits_total for kind.
func (s *serverProc) limitHits(t *testing.T, kind string) float64 {
	t.Helper()
	return s.metric(t, `porthole_limit_hits_total{kind="`+kind+`"}`)
}

// logLines counts the server's JSON log lines with message msg and, when
// given, the field limit=kind.
func (s *serverProc) logLines(msg, kind string) int {
	n := 0
	for _, l := range strings.Split(s.errOut(), "\n") {
		if !strings.Contains(l, `"msg":"`+msg+`"`) {
			continue
		}
		if kind != "" && !strings.Contains(l, `"limit":"`+kind+`"`) {
			continue
		}
		n++
	}
	return n
}

// limUserKey adds a user and returns a new API key for it.
func (s *serverProc) limUserKey(t *testing.T, user string, limitFlags ...string) string {
	t.Helper()
	s.mustAdmin(t, "users", "add", user)
	if len(limitFlags) > 0 {
		s.mustAdmin(t, append([]string{"users", "limits", user}, limitFlags...)...)
	}
	return s.mustAdmin(t, "keys", "create", "--user", user)
}

// limApp is a local app that counts the requests reaching it.
type limApp struct {
	port string
	hits atomic.Int64
}

func limStartApp(t *testing.T) *limApp {
	t.Helper()
	a := &limApp{}
	a.port = portOf(serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		io.WriteString(w, "limits app")
	})}))
	return a
}

// limStartBigApp serves size bytes on every request and returns its port.
func limStartBigApp(t *testing.T, size int) string {
	t.Helper()
	body := make([]byte, size)
	return portOf(serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	})}))
}

// limVisitor returns an HTTP client that sends every request to the
// server's public listener (keep-alive, as a browser would), from
// localIP when it is not empty.
func (s *serverProc) limVisitor(t *testing.T, localIP string) *http.Client {
	return visitorClient(t, s.httpAddr, localIP, 64, 10*time.Second)
}

// limGet fetches url and returns status, Retry-After and body.
func limGet(c *http.Client, url string) (int, string, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), err
}

// limHandshake sends a tunnel WebSocket upgrade with bearer (none when
// empty) from localIP (any when empty) and returns the status, the
// Retry-After header and the refusal, if any.
func limHandshake(addr, localIP, bearer string) (int, string, *protocol.Error, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", nil, err
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
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	var refusal *protocol.Error
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		refusal, _ = protocol.DecodeRefusal(b)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), refusal, nil
}

// limLoopbackIPs returns up to n loopback addresses besides 127.0.0.1
// that can be used as source addresses (Linux routes all of 127/8 to
// loopback), or just 127.0.0.1 where there are none.
func limLoopbackIPs(target string, n int) []string {
	var ips []string
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", target)
		if err != nil {
			break
		}
		c.Close()
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	return ips
}
