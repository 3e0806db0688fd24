package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

func okHolder() *holder {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	h.tcp = func(c net.Conn) error { _, err := io.Copy(c, c); return err }
	return h
}

// get forwards one request through a fresh front and returns the status.
func get(t *testing.T, d *Dialer, addr string) int {
	t.Helper()
	f := startFront(t, d, addr, 1)
	resp, err := client(t).Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 && string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	return resp.StatusCode
}

func TestWrongSecretRefused(t *testing.T) {
	h := okHolder()
	srv, addr := startServer(t, testSecret, h, nil)
	bad := newDialer(t, otherSecret)
	if code := get(t, bad, addr); code != http.StatusBadGateway {
		t.Fatalf("wrong secret: %d", code)
	}
	if _, err := bad.DialTCP(context.Background(), addr, 7000, 1, netip.MustParseAddrPort("192.0.2.1:1")); err == nil {
		t.Fatal("DialTCP with the wrong secret succeeded")
	}
	// A server with the wrong secret is refused by a good dialer too:
	// the pin works both ways.
	_, badAddr := startServer(t, otherSecret, okHolder(), nil)
	good := newDialer(t, testSecret)
	if code := get(t, good, badAddr); code != http.StatusBadGateway {
		t.Fatalf("server with the wrong secret: %d", code)
	}
	if len(h.reqs) != 0 || len(h.tcpIn) != 0 {
		t.Fatal("the handler was reached without the secret")
	}
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakeFailed] >= 1 })
	if st := srv.Stats(); st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The right secret still works.
	if code := get(t, good, addr); code != 200 {
		t.Fatalf("right secret: %d", code)
	}
}

// A TLS client without a certificate: TLS 1.3 lets its handshake finish
// on its side, but the server refuses before reading anything else.
func TestNoCertificateRefused(t *testing.T) {
	h := okHolder()
	_, addr := startServer(t, testSecret, h, nil)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13})
	if err == nil {
		defer c.Close()
		// A yamux SYN for stream 1 with the HTTP kind byte and a request.
		c.Write([]byte{0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0})
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, rerr := c.Read(make([]byte, 100))
		if rerr == nil || n > 0 {
			t.Fatalf("read %d bytes, %v", n, rerr)
		}
		if !strings.Contains(rerr.Error(), "certificate required") {
			t.Logf("refused with: %v", rerr)
		}
	}
	if len(h.reqs) != 0 {
		t.Fatal("reached the handler")
	}
}

// Bytes that are not TLS, and TLS without our protocol, get nothing.
func TestGarbageRefused(t *testing.T) {
	h := okHolder()
	srv, addr := startServer(t, testSecret, h, nil)
	for _, junk := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
		strings.Repeat("\x00", 4096),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%q: connection left open", junk)
		}
		if strings.Contains(string(b), "HTTP/") {
			t.Fatalf("%q: answered %q", junk, b)
		}
	}
	// A browser-like TLS client: no certificate, no ALPN.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 10)); err == nil || n > 0 {
			t.Fatalf("TLS without cert: read %d, %v", n, err)
		}
		c.Close()
	}
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakeFailed] >= 4 })
	if len(h.reqs) != 0 {
		t.Fatal("reached the handler")
	}
}

// dialFrom opens a TCP connection to addr from the loopback address src,
// so that attack tests do not share the real peer's address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot dial from %s: %v", src, err)
	}
	return c
}

// closedSoon reports whether c is closed by the server within 10 s
// (reads return an error other than a timeout).
func closedSoon(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// A slowloris handshake (one byte, then nothing) is cut at the handshake
// timeout.
func TestSlowHandshakeCut(t *testing.T) {
	srv, addr := startServer(t, testSecret, okHolder(), func(s *Server) { s.HandshakeTimeout = 300 * time.Millisecond })
	c := dialFrom(t, "127.0.0.2", addr)
	defer c.Close()
	c.Write([]byte{0x16})
	if !closedSoon(c) {
		t.Fatal("stalled handshake not cut")
	}
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakeFailed] == 1 })
}

// A flood of connections that never finish their handshake: past the
// per-address and total bounds they are closed on arrival, goroutines
// stay bounded, and the real peer keeps being served throughout.
func TestHandshakeFloodBounded(t *testing.T) {
	const perIP, total = 4, 12
	srv, addr := startServer(t, testSecret, okHolder(), func(s *Server) {
		s.MaxHandshakesPerIP = perIP
		s.MaxHandshakes = total
		s.HandshakeTimeout = time.Minute // held open for the test
	})
	good := newDialer(t, testSecret)
	if code := get(t, good, addr); code != 200 {
		t.Fatalf("before: %d", code)
	}
	before := runtime.NumGoroutine()

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// 50 from one address: 4 held, 46 closed at once.
	for i := 0; i < 50; i++ {
		c := dialFrom(t, "127.0.0.2", addr)
		c.Write([]byte{0x16, 0x03})
		held = append(held, c)
	}
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakesPerIP] == 50-perIP })
	// From two more addresses, up to the total.
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		for i := 0; i < perIP; i++ {
			held = append(held, dialFrom(t, src, addr))
		}
	}
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakes] == 4 })
	if grown := runtime.NumGoroutine() - before; grown > 2*total+10 {
		t.Fatalf("%d goroutines more during the flood (bound %d)", grown, 2*total+10)
	}
	// The established session is not affected.
	for i := 0; i < 5; i++ {
		if code := get(t, good, addr); code != 200 {
			t.Fatalf("during the flood: %d", code)
		}
	}
	// Closing the flood frees the slots: a new peer can connect.
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitFor(t, func() bool { return srv.Stats().Refused[RefusedHandshakeFailed] >= total })
	other := newDialer(t, testSecret)
	if code := get(t, other, addr); code != 200 {
		t.Fatalf("new peer after the flood: %d", code)
	}
}

func TestSecretValidation(t *testing.T) {
	for _, s := range []string{"", "short", "  fifteen bytes \n"} {
		if err := ValidateSecret([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if err := ValidateSecret(testSecret); err != nil {
		t.Fatal(err)
	}
	// Surrounding white space (a newline at the end of the file) does
	// not change the identity.
	a, _ := deriveIdentity([]byte("  " + strings.TrimSpace(string(testSecret)) + "\r\n"))
	b, _ := deriveIdentity(testSecret)
	if !a.pub.Equal(b.pub) {
		t.Fatal("white space changed the identity")
	}
	c, _ := deriveIdentity(otherSecret)
	if c.pub.Equal(b.pub) {
		t.Fatal("two secrets, one identity")
	}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	s := NewServer([]byte("short"), okHolder(), nil)
	if err := s.Serve(l); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("Serve with a short secret: %v", err)
	}
	d := NewDialer([]byte("short"), "x", nil)
	defer d.Close()
	if _, err := d.DialTCP(context.Background(), "127.0.0.1:1", 7000, 1, netip.MustParseAddrPort("192.0.2.1:1")); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("DialTCP with a short secret: %v", err)
	}
	_ = fmt.Sprint()
}
