package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
)

// The hardening tests attack a real server process the way a hostile
// visitor or client would, and read its memory and goroutines from the
// outside: /proc for the resident set, /metrics for the rest.

// rss returns the server process's resident set size in bytes.
func (s *serverProc) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc on this system: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// goroutines returns the server's go_goroutines metric.
func (s *serverProc) goroutines(t *testing.T) int {
	t.Helper()
	return int(s.metric(t, "go_goroutines"))
}

// settledBaseline waits for the server's goroutine count to stop moving
// after start-up and returns it with the RSS.
func (s *serverProc) settledBaseline(t *testing.T) (int, int64) {
	t.Helper()
	g := s.goroutines(t)
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		n := s.goroutines(t)
		if n == g {
			break
		}
		g = n
	}
	return g, s.rss(t)
}

// endlessApp serves size bytes of a pattern on every request, streamed
// (never held in memory), and returns its port.
func endlessApp(t *testing.T, size int64) string {
	t.Helper()
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	return portOf(serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for sent := int64(0); sent < size; {
			n, err := w.Write(chunk[:min(int64(len(chunk)), size-sent)])
			if err != nil {
				return
			}
			sent += int64(n)
		}
	})}))
}

// stalledVisitor asks httpAddr for url's host and reads the first bytes
// of the answer, then stops reading: its socket's receive buffer is kept
// small so that the server feels it at once.
func stalledVisitor(t *testing.T, httpAddr, url string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.TCPConn).SetReadBuffer(8 << 10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hostOfURL(t, url))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("stalled visitor got no answer: %v", err)
	}
	return c
}

// rawSession opens a tunnel WebSocket to s (a --no-auth server) and
// returns it as a byte stream, on which the test writes multiplexer
// frames of its own making.
func rawSession(t *testing.T, s *serverProc, from string) net.Conn {
	t.Helper()
	ws, resp, err := dialRaw(s, from)
	if err != nil {
		t.Fatalf("handshake from %s: %v (%v)", from, err, resp)
	}
	ws.SetReadLimit(-1)
	c := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { c.Close() })
	return c
}

// Multiplexer frame types and flags (internal/yamux/spec.md).
const (
	frameData, frameWindowUpdate, framePing, frameGoAway = 0, 1, 2, 3
	flagSYN, flagACK                                     = 1, 2
)

func muxFrame(typ uint8, flags uint16, id, length uint32) []byte {
	b := make([]byte, 12)
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:4], flags)
	binary.BigEndian.PutUint32(b[4:8], id)
	binary.BigEndian.PutUint32(b[8:12], length)
	return b
}

// cutOff reports whether the server has closed c: a read gets an error
// other than a timeout.
func cutOff(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 64<<10))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// rawGet sends one request for host on a connection of its own and
// returns the status line and headers.
func rawGet(t *testing.T, addr, host, localIP string) (*http.Response, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// dialRaw opens a tunnel WebSocket from the loopback address from, without
// the porthole client.
func dialRaw(s *serverProc, from string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	return websocket.Dial(ctx, s.wsURL(), &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}, HTTPClient: hc})
}
