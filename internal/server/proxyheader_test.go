package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/porthole/porthole/internal/server"
)

// The load balancer of these tests dials from 127.0.0.3; visitors and the
// tunnel client from 127.0.0.1 are not trusted.
const lbIP = "127.0.0.3"

// proxyTunnel is a tunnel whose app answers with the visitor's address as
// the server forwarded it, behind a server that trusts lbIP.
func proxyTunnel(t *testing.T, mods ...func(*server.Config)) (addr, host string) {
	t.Helper()
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}, append([]func(*server.Config){func(c *server.Config) { c.HTTP.ProxyProtocolFrom = []string{lbIP + "/32"} }}, mods...)...)
	return srv.PublicAddr(), strings.TrimPrefix(url, "http://")
}

// dialFrom opens a connection from local address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// proxyHeader writes a PROXY protocol header (version 1 or 2) saying the
// connection comes from src.
func proxyHeader(t *testing.T, c net.Conn, version byte, src string) {
	t.Helper()
	h := &proxyproto.Header{
		Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP(src), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 80},
	}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
}

// getOn sends one request on c and returns the status and body.
func getOn(t *testing.T, c net.Conn, host string) (int, string) {
	t.Helper()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProxyHeaderGivesVisitorAddress(t *testing.T) {
	addr, host := proxyTunnel(t)
	for _, v := range []byte{1, 2} {
		c := dialFrom(t, lbIP, addr)
		proxyHeader(t, c, v, "203.0.113.7")
		if code, body := getOn(t, c, host); code != 200 || body != "203.0.113.7" {
			t.Errorf("PROXY v%d from the balancer: %d %q, want 200 and the visitor's address", v, code, body)
		}
	}
	// A visitor that is not the balancer is served as it comes.
	if code, body := getOn(t, dialFrom(t, "127.0.0.1", addr), host); code != 200 || body != "127.0.0.1" {
		t.Errorf("direct visitor: %d %q", code, body)
	}
}

func TestProxyHeaderFromStrangerNotBelieved(t *testing.T) {
	addr, host := proxyTunnel(t)
	// A stranger sending a header does not get to pick its address: the
	// header is just bytes before its request, which is then malformed.
	c := dialFrom(t, "127.0.0.1", addr)
	proxyHeader(t, c, 1, "198.51.100.9")
	if code, body := getOn(t, c, host); code != 400 {
		t.Errorf("stranger with a PROXY header: %d %q, want 400", code, body)
	}
}

func TestProxyHeaderRequiredFromBalancer(t *testing.T) {
	addr, host := proxyTunnel(t)
	// The balancer's connection without a header is closed unanswered:
	// believing its own address would put every visitor on one address.
	if code, body := getOn(t, dialFrom(t, lbIP, addr), host); code != 0 {
		t.Errorf("balancer without a header: %d %q, want the connection closed", code, body)
	}
	c := dialFrom(t, lbIP, addr)
	io.WriteString(c, "PROXY TCP4 garbage\r\n")
	if code, body := getOn(t, c, host); code != 0 {
		t.Errorf("malformed header: %d %q, want the connection closed", code, body)
	}
	c = dialFrom(t, lbIP, addr)
	proxyHeader(t, c, 2, "203.0.113.8")
	if code, body := getOn(t, c, host); code != 200 || body != "203.0.113.8" {
		t.Errorf("after bad headers: %d %q", code, body)
	}
}

// TestProxyHeaderStallsHoldNoOne: connections from the balancer that
// never send their header wait on their own; everyone else is accepted
// at once, and the stalled ones are closed after the read-header timeout
// with their goroutines gone.
func TestProxyHeaderStallsHoldNoOne(t *testing.T) {
	addr, host := proxyTunnel(t, func(c *server.Config) { c.HTTP.ReadHeaderTimeout.Set("1s") })
	base := runtime.NumGoroutine()
	var stalled []net.Conn
	for range 200 {
		stalled = append(stalled, dialFrom(t, lbIP, addr))
	}
	for i := range 5 {
		if code, body := getOn(t, dialFrom(t, "127.0.0.1", addr), host); code != 200 {
			t.Fatalf("visitor %d while the balancer stalls: %d %q", i, code, body)
		}
		c := dialFrom(t, lbIP, addr)
		proxyHeader(t, c, 2, "203.0.113.10")
		if code, body := getOn(t, c, host); code != 200 || body != "203.0.113.10" {
			t.Fatalf("balancer connection %d while others stall: %d %q", i, code, body)
		}
	}
	for i, c := range stalled {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("stalled connection %d: %v, want closed by the server", i, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+20 {
		t.Errorf("%d goroutines after the stalled connections closed, %d before", n, base)
	}
}

// TestProxyHeaderAddressLimits: the per-address connection cap counts
// the address the header gives, so one busy visitor behind the balancer
// does not lock out the others.
func TestProxyHeaderAddressLimits(t *testing.T) {
	addr, host := proxyTunnel(t, func(c *server.Config) { c.Limits.VisitorConnectionsPerIP = 2 })
	for range 2 {
		c := dialFrom(t, lbIP, addr)
		proxyHeader(t, c, 2, "198.51.100.1")
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host) // kept alive: holds its slot
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v %v", resp, err)
		}
	}
	c := dialFrom(t, lbIP, addr)
	proxyHeader(t, c, 2, "198.51.100.1")
	if code, _ := getOn(t, c, host); code != 429 {
		t.Errorf("third connection of 198.51.100.1: %d, want 429", code)
	}
	c = dialFrom(t, lbIP, addr)
	proxyHeader(t, c, 2, "198.51.100.2")
	if code, body := getOn(t, c, host); code != 200 || body != "198.51.100.2" {
		t.Errorf("another visitor behind the same balancer: %d %q", code, body)
	}
}

func TestProxyHeaderConfigRefused(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.HTTP.ProxyProtocolFrom = []string{"10.0.0.0/8", "not-an-address"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `"not-an-address" is neither`) {
		t.Fatalf("Validate: %v", err)
	}
}
