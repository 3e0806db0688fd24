package e2e

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPortRange finds n consecutive loopback ports that are free right now,
// for a test server's --tcp-ports.
func tcpPortRange(t *testing.T, n int) (lo, hi int) {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if base+n-1 > 65535 {
			continue
		}
		free := true
		var held []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if free {
			return base, base + n - 1
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0, 0
}

// tcpServer is a `porthole server --no-auth` with a TCP port range.
type tcpServer struct {
	*serverProc
	lo, hi int
}

func startTCPServer(t *testing.T, extra ...string) *tcpServer {
	t.Helper()
	lo, hi := tcpPortRange(t, 16)
	s := startCoreServer(t, append([]string{"--tcp-ports", fmt.Sprintf("%d-%d", lo, hi)}, extra...)...)
	return &tcpServer{serverProc: s, lo: lo, hi: hi}
}

// tcpTunnel is a running `porthole tcp` client and the public address its
// Forwarding line names.
type tcpTunnel struct {
	*proc
	url    string // tcp://localhost:PORT
	public string // 127.0.0.1:PORT, where visitors connect
}

// startTCPTunnel runs `porthole tcp TARGET` against srv (unless flags
// name another --server) and waits for its Forwarding line.
func startTCPTunnel(t *testing.T, srv *serverProc, target string, flags ...string) *tcpTunnel {
	t.Helper()
	args := []string{"tcp", target, "--inspect-addr", "off"}
	if !slices.Contains(flags, "--server") {
		args = append(args, "--server", srv.wsURL())
	}
	args = append(args, flags...)
	p := startPorthole(t, killed, args...)
	url := p.forwardingURLs(t, 1)[0]
	return &tcpTunnel{proc: p, url: url, public: tcpPublicAddr(t, url)}
}

// tcpPublicAddr turns tcp://localhost:PORT into the loopback address to dial.
func tcpPublicAddr(t *testing.T, url string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(url, "tcp://localhost:")
	if !ok {
		t.Fatalf("Forwarding URL %q is not tcp://localhost:PORT", url)
	}
	if _, err := strconv.Atoi(rest); err != nil {
		t.Fatalf("Forwarding URL %q: %v", url, err)
	}
	return "127.0.0.1:" + rest
}

// tcpApp is a local TCP app: each connection is handed to handle in a
// goroutine of its own.
type tcpApp struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startTCPApp(t *testing.T, handle func(net.Conn)) *tcpApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &tcpApp{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.accepted.Add(1)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return a
}

func (a *tcpApp) port() string {
	return strconv.Itoa(a.ln.Addr().(*net.TCPAddr).Port)
}

// tcpEcho copies a connection back to itself, then half-closes.
func tcpEcho(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

// tcpDial connects to a tunnel's public address as a visitor.
func tcpDial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// tcpWaitEcho dials addr until a short message comes back through the
// tunnel, or fails after within.
func tcpWaitEcho(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		if last = tcpTryEcho(addr); last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no echo through %s within %s: %v", addr, within, last)
}

func tcpTryEcho(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo returned %q", buf)
	}
	return nil
}
