package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
)

// connPair returns the two ends of one connection of some kind.
type connPair func(t *testing.T) (client, server net.Conn)

// sessionPair returns a client and a server session over one connection.
type sessionPair func(t *testing.T) (client, server *Session)

// testConnTypes lists the connection kinds sessions must work over, as
// hashicorp/yamux's tests do: an in-memory pipe, TCP, TLS, and the real
// thing, a WebSocket set up by Accept and Dial.
func testConnTypes(t *testing.T, fn func(t *testing.T, pair sessionPair)) {
	fromConns := func(cp connPair) sessionPair {
		return func(t *testing.T) (*Session, *Session) {
			c, s := cp(t)
			cs, err := NewClientSession(c, Options{})
			if err != nil {
				t.Fatal(err)
			}
			ss, err := NewServerSession(s, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close(); ss.Close() })
			return cs, ss
		}
	}
	kinds := []struct {
		name string
		pair sessionPair
	}{
		{"Pipe", fromConns(pipeConns)},
		{"TCP", fromConns(tcpConns)},
		{"TLS", fromConns(tlsConns)},
		{"WebSocket", webSocketSessions},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.pair) })
	}
}

func pipeConns(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	return a, b
}

func tcpConns(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func tlsConns(t *testing.T) (net.Conn, net.Conn) {
	c, s := tcpConns(t)
	cert := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	ts := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	errc := make(chan error, 1)
	go func() { errc <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return tc, ts
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "porthole test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// webSocketSessions runs Accept behind an HTTP server and Dial against it.
func webSocketSessions(t *testing.T) (*Session, *Session) {
	accepted := make(chan *Session, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Options{})
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- s
	}))
	t.Cleanup(hs.Close)
	cs, err := Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http"), DialOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ss := <-accepted
	t.Cleanup(func() { cs.Close(); ss.Close() })
	return cs, ss
}

func TestSessionEcho(t *testing.T) {
	testConnTypes(t, func(t *testing.T, pair sessionPair) {
		cs, ss := pair(t)
		// The server opens streams, as it does for visitors; the client
		// echoes.
		go echoServer(cs)
		const streams = 16
		var wg sync.WaitGroup
		for i := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := ss.OpenStream()
				if err != nil {
					t.Error(err)
					return
				}
				defer st.Close()
				msg := []byte(fmt.Sprintf("hello from stream %d", i))
				if _, err := st.Write(msg); err != nil {
					t.Error(err)
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("stream %d: got %q, %v", i, got, err)
				}
			}()
		}
		wg.Wait()
	})
}

func echoServer(s *Session) {
	for {
		st, err := s.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			io.Copy(st, st)
		}()
	}
}

// TestSessionLargeTransfer moves several MiB each way on concurrent
// streams and checks the bytes, which exercises window updates and, on the
// WebSocket, the coalescing writer.
func TestSessionLargeTransfer(t *testing.T) {
	size := 4 << 20
	testConnTypes(t, func(t *testing.T, pair sessionPair) {
		cs, ss := pair(t)
		go echoServer(cs)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := ss.OpenStream()
				if err != nil {
					t.Error(err)
					return
				}
				defer st.Close()
				src := io.LimitReader(newPattern(byte(i)), int64(size))
				want := sha256.New()
				go func() {
					io.Copy(st, io.TeeReader(src, want))
					st.CloseWrite() // FIN: the echo ends
				}()
				got := sha256.New()
				n, err := io.Copy(got, st)
				if err != nil || n != int64(size) {
					t.Errorf("stream %d: read %d bytes, %v", i, n, err)
					return
				}
				if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
					t.Errorf("stream %d: data corrupted", i)
				}
			}()
		}
		wg.Wait()
	})
}

// newPattern is an endless, cheap pseudo-random byte source.
func newPattern(seed byte) io.Reader { return mrand.NewChaCha8([32]byte{seed}) }

func TestSessionCloseEndsStreams(t *testing.T) {
	testConnTypes(t, func(t *testing.T, pair sessionPair) {
		cs, ss := pair(t)
		accepted := make(chan net.Conn, 1)
		go func() {
			st, err := cs.AcceptStream()
			if err == nil {
				accepted <- st
			}
		}()
		st, err := ss.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("x"))
		peer := <-accepted
		cs.Close()
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(st)
			done <- err
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a stream stayed open after its peer session closed")
		}
		if _, err := ss.OpenStream(); err == nil {
			// The server notices the close asynchronously; give it a moment.
			select {
			case <-ss.CloseChan():
			case <-time.After(10 * time.Second):
				t.Fatal("server session did not notice its peer closed")
			}
		}
		peer.Close()
	})
}

func TestOptions(t *testing.T) {
	cfg, err := Options{}.yamuxConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxStreamWindowSize != DefaultStreamWindow || DefaultStreamWindow <= 256<<10 {
		t.Errorf("default stream window %d: must be raised above yamux's 256 KiB", cfg.MaxStreamWindowSize)
	}
	if cfg.EnableKeepAlive {
		t.Error("yamux keep-alive must be off: the control protocol's heartbeat checks liveness")
	}
	cfg, err = Options{StreamWindow: 4 << 20, AcceptBacklog: 7, WriteTimeout: 3 * time.Second}.yamuxConfig()
	if err != nil || cfg.MaxStreamWindowSize != 4<<20 || cfg.AcceptBacklog != 7 || cfg.ConnectionWriteTimeout != 3*time.Second {
		t.Fatalf("options not applied: %+v %v", cfg, err)
	}
	if _, err := (Options{StreamWindow: 1000}).yamuxConfig(); err == nil {
		t.Error("a window below yamux's initial 256 KiB must be refused")
	}
}

// recordConn records every Write that reaches the wire.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	if c.Conn == nil {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func yamuxHeader(typ byte, flags uint16, id, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[0] = 0
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], id)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestCoalescingWriter(t *testing.T) {
	rc := &recordConn{}
	c := &coalescingConn{Conn: rc}
	// A data header with a body: held back, then sent with the body.
	n, err := c.Write(yamuxHeader(yamuxTypeData, 0, 1, 5))
	if n != yamuxHeaderSize || err != nil || len(rc.writes) != 0 {
		t.Fatalf("data header: n=%d err=%v writes=%d, want it held", n, err, len(rc.writes))
	}
	n, err = c.Write([]byte("hello"))
	if n != 5 || err != nil || len(rc.writes) != 1 {
		t.Fatalf("body: n=%d err=%v writes=%d", n, err, len(rc.writes))
	}
	if want := append(yamuxHeader(yamuxTypeData, 0, 1, 5), "hello"...); !bytes.Equal(rc.writes[0], want) {
		t.Fatalf("coalesced write %x, want %x", rc.writes[0], want)
	}
	// Frames without a body pass straight through: a window update, a
	// ping, a go-away, and a data header of length 0 (SYN or FIN only).
	for _, h := range [][]byte{
		yamuxHeader(1, 0, 1, 1<<20), // window update
		yamuxHeader(2, 1, 0, 7),     // ping
		yamuxHeader(3, 0, 0, 0),     // go away
		yamuxHeader(yamuxTypeData, 4, 1, 0),
	} {
		before := len(rc.writes)
		c.Write(h)
		if len(rc.writes) != before+1 || !bytes.Equal(rc.writes[before], h) {
			t.Fatalf("header %x was not written through at once", h)
		}
	}
	// A large body does not stay pinned in the buffer afterwards.
	c.Write(yamuxHeader(yamuxTypeData, 0, 1, 1<<20))
	c.Write(make([]byte, 1<<20))
	if c.buf != nil {
		t.Errorf("a %d-byte buffer stays allocated after a large frame", cap(c.buf))
	}
	if last := rc.writes[len(rc.writes)-1]; len(last) != yamuxHeaderSize+1<<20 {
		t.Fatalf("large frame written as %d bytes", len(last))
	}
}

type failConn struct{ net.Conn }

func (failConn) Write(p []byte) (int, error) { return 0, errors.New("broken pipe") }

func TestCoalescingWriterError(t *testing.T) {
	c := &coalescingConn{Conn: failConn{}}
	c.Write(yamuxHeader(yamuxTypeData, 0, 1, 3))
	if n, err := c.Write([]byte("abc")); err == nil || n != 0 {
		t.Fatalf("a failed body write reported n=%d err=%v", n, err)
	}
}

// TestCoalescingOverRealSession checks the invariant on a live session:
// every data frame with a body reaches the connection in one Write.
func TestCoalescingOverRealSession(t *testing.T) {
	a, b := tcpConns(t)
	rc := &recordConn{Conn: a}
	cs, err := NewClientSession(rc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ss, err := NewServerSession(b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	go echoServer(ss)
	st, err := cs.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789"), 50000)
	go st.Write(payload)
	if _, err := io.ReadFull(st, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	st.Close()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	dataFrames := 0
	for _, w := range rc.writes {
		if len(w) < yamuxHeaderSize {
			t.Fatalf("a write of %d bytes is shorter than a frame header", len(w))
		}
		length := binary.BigEndian.Uint32(w[8:12])
		if w[1] == yamuxTypeData && length > 0 {
			dataFrames++
			if len(w) != yamuxHeaderSize+int(length) {
				t.Fatalf("data frame of length %d written as %d bytes", length, len(w))
			}
		} else if len(w) != yamuxHeaderSize {
			t.Fatalf("non-data frame written as %d bytes", len(w))
		}
	}
	if dataFrames == 0 {
		t.Fatal("no data frames seen")
	}
}

func TestJoinHalfClose(t *testing.T) {
	// visitor <-> (a | b) <-> app, joined in the middle.
	visitor, a := tcpConns(t)
	b, app := tcpConns(t)
	type counts struct{ ab, ba int64 }
	done := make(chan counts, 1)
	go func() {
		ab, ba := Join(a, b)
		done <- counts{ab, ba}
	}()
	visitor.Write([]byte("request"))
	visitor.(*net.TCPConn).CloseWrite()
	// The app sees the request and its end, and can still answer.
	req, err := io.ReadAll(app)
	if err != nil || string(req) != "request" {
		t.Fatalf("app read %q, %v", req, err)
	}
	app.Write([]byte("response, after the request ended"))
	app.Close()
	resp, err := io.ReadAll(visitor)
	if err != nil || string(resp) != "response, after the request ended" {
		t.Fatalf("visitor read %q, %v", resp, err)
	}
	select {
	case c := <-done:
		if c.ab != 7 || c.ba != int64(len(resp)) {
			t.Fatalf("Join counted %d/%d bytes", c.ab, c.ba)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Join did not return after both sides ended")
	}
}

func TestJoinOverStreams(t *testing.T) {
	// A TCP tunnel joins a visitor connection with a stream.
	cs, ss := webSocketSessions(t)
	visitor, a := tcpConns(t)
	go func() {
		st, err := cs.AcceptStream()
		if err != nil {
			return
		}
		data, _ := io.ReadAll(st)
		st.Write(bytes.ToUpper(data))
		st.Close()
	}()
	st, err := ss.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	go Join(a, st)
	visitor.Write([]byte("shout"))
	visitor.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(visitor)
	if err != nil || string(got) != "SHOUT" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestDialRefusals(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		code    protocol.Code
		final   bool
		msg     string
	}{
		{"porthole refusal", func(w http.ResponseWriter, r *http.Request) {
			protocol.WriteRefusal(w, http.StatusUnauthorized, protocol.Err(protocol.CodeUnauthorized, true, "API key revoked"))
		}, protocol.CodeUnauthorized, true, "API key revoked"},
		{"retryable refusal", func(w http.ResponseWriter, r *http.Request) {
			protocol.WriteRefusal(w, http.StatusServiceUnavailable, protocol.Err(protocol.CodeShuttingDown, false, "restarting"))
		}, protocol.CodeShuttingDown, false, "restarting"},
		{"not a tunnel listener", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, protocol.CodeBadRequest, false, "no tunnel listener"},
		{"proxy forbids", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", http.StatusForbidden)
		}, protocol.CodeBadRequest, true, "Forbidden"},
		{"proxy rate limits", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "slow", http.StatusTooManyRequests)
		}, protocol.CodeBadRequest, false, "Too Many Requests"},
		{"wrong subprotocol", func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"something.else"}})
			if err == nil {
				c.CloseNow()
			}
		}, protocol.CodeUnsupportedVersion, true, "does not speak porthole.v1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			_, err := Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http"), DialOptions{Timeout: 5 * time.Second})
			he, ok := IsHandshakeError(err)
			if !ok {
				t.Fatalf("got %v, want a *HandshakeError", err)
			}
			if he.Reason.Code != tc.code || he.Reason.Final != tc.final || !strings.Contains(he.Error(), tc.msg) {
				t.Fatalf("got %+v (%q), want code %s final %v mentioning %q", he.Reason, he.Error(), tc.code, tc.final, tc.msg)
			}
			var perr *protocol.Error
			if !errors.As(err, &perr) {
				t.Fatal("a HandshakeError must unwrap to its *protocol.Error")
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := Dial(context.Background(), "ws://"+addr, DialOptions{Timeout: 2 * time.Second})
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if _, ok := IsHandshakeError(err); ok {
		t.Fatal("a refused TCP connection is not a handshake refusal")
	}
}

func TestAcceptRequiresSubprotocol(t *testing.T) {
	acceptErr := make(chan error, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Options{})
		if s != nil {
			s.Close()
		}
		acceptErr <- err
	}))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusProtocolError {
		t.Fatalf("client read %v, want close status 1002", err)
	}
	if err := <-acceptErr; err == nil || !strings.Contains(err.Error(), protocol.Subprotocol) {
		t.Fatalf("Accept without the subprotocol: %v", err)
	}
}

func TestSlogWriter(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := slogWriter{l}.Write([]byte("[ERR] yamux: something\n"))
	if n != 23 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, `msg="[ERR] yamux: something"`) || !strings.Contains(out, "component=mux") {
		t.Fatalf("logged %q", out)
	}
}
