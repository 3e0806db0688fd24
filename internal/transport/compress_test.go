package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/porthole/porthole/internal/protocol"
)

// countingListener counts the bytes its connections read and write: the
// bytes on the wire.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type compressedPair struct {
	client, server *Session
	wire           *atomic.Int64 // bytes on the server's side of the connection
	clientLog      *syncBuffer
	subprotocol    string // what the client offered first
}

// compressSessions runs Accept (allowing compression or not) and Dial
// (asking for it or not) over a WebSocket on loopback TCP.
func compressSessions(t *testing.T, ask, allow bool) *compressedPair {
	t.Helper()
	p := &compressedPair{wire: new(atomic.Int64), clientLog: new(syncBuffer)}
	accepted := make(chan *Session, 1)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.subprotocol, _, _ = strings.Cut(r.Header.Get("Sec-WebSocket-Protocol"), ",")
		s, err := Accept(w, r, Options{AllowCompression: allow})
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- s
	}))
	hs.Listener = countingListener{Listener: hs.Listener, n: p.wire}
	hs.Start()
	t.Cleanup(hs.Close)
	log := slog.New(slog.NewTextHandler(p.clientLog, nil))
	cs, err := Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http"), DialOptions{
		Timeout:  5 * time.Second,
		Compress: ask,
		Mux:      Options{Logger: log},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.client = cs
	p.server = <-accepted
	t.Cleanup(func() { cs.Close(); p.server.Close() })
	return p
}

// jsonLines is compressible text, like an API's responses.
func jsonLines(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"user-%d","email":"user-%d@example.com","active":%t,"roles":["reader","writer"]}`+"\n", i, i%97, i%89, i%3 == 0)
	}
	return b.Bytes()[:n]
}

// roundTrip sends data on a server-opened stream to the client's echo and
// checks what comes back.
func roundTrip(t *testing.T, p *compressedPair, data []byte) {
	t.Helper()
	st, err := p.server.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	go func() {
		st.Write(data)
		st.CloseWrite()
	}()
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), len(data))
	}
}

// TestCompressionNegotiation: a session is compressed only when the client
// asks and the server allows; a refusal is not an error, and is logged.
func TestCompressionNegotiation(t *testing.T) {
	data := jsonLines(1 << 20)
	for _, tc := range []struct {
		ask, allow, compressed bool
		log                    string
	}{
		{ask: true, allow: true, compressed: true, log: "session compressed"},
		{ask: true, allow: false, compressed: false, log: "compression refused by the server"},
		{ask: false, allow: true, compressed: false},
		{ask: false, allow: false, compressed: false},
	} {
		t.Run(fmt.Sprintf("ask=%t,allow=%t", tc.ask, tc.allow), func(t *testing.T) {
			p := compressSessions(t, tc.ask, tc.allow)
			go echoServer(p.client)
			before := p.wire.Load()
			roundTrip(t, p, data)
			wire := p.wire.Load() - before
			// Both ways: 2 MiB of payload.
			ratio := float64(wire) / float64(2*len(data))
			if tc.compressed && ratio > 0.5 {
				t.Errorf("compressed session: %d wire bytes for %d payload bytes (%.2f)", wire, 2*len(data), ratio)
			}
			if !tc.compressed && ratio < 1 {
				t.Errorf("uncompressed session: %d wire bytes for %d payload bytes (%.2f)", wire, 2*len(data), ratio)
			}
			logs := p.clientLog.String()
			if tc.log != "" && !strings.Contains(logs, tc.log) {
				t.Errorf("client log lacks %q:\n%s", tc.log, logs)
			}
			if !tc.ask && logs != "" {
				t.Errorf("a client that did not ask logged about compression:\n%s", logs)
			}
			if want := protocol.Subprotocol; tc.ask {
				if p.subprotocol != SubprotocolZstd {
					t.Errorf("client offered %q first, want %q", p.subprotocol, SubprotocolZstd)
				}
			} else if p.subprotocol != want {
				t.Errorf("client offered %q first, want %q", p.subprotocol, want)
			}
		})
	}
}

// TestCompressedSessionStreams moves compressible and incompressible data
// on concurrent streams of a compressed session, both ways, and checks
// every byte.
func TestCompressedSessionStreams(t *testing.T) {
	p := compressSessions(t, true, true)
	go echoServer(p.client)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := p.server.OpenStream()
			if err != nil {
				t.Error(err)
				return
			}
			defer st.Close()
			var src io.Reader = bytes.NewReader(jsonLines(1 << 20))
			if i%2 == 1 {
				src = io.LimitReader(newPattern(byte(i)), 1<<20)
			}
			want := sha256.New()
			go func() {
				io.Copy(st, io.TeeReader(src, want))
				st.CloseWrite()
			}()
			got := sha256.New()
			if n, err := io.Copy(got, st); err != nil || n != 1<<20 {
				t.Errorf("stream %d: read %d bytes, %v", i, n, err)
				return
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Errorf("stream %d: data corrupted", i)
			}
		}()
	}
	wg.Wait()
}

// TestCompressedInteractive: a few bytes written are readable at once on
// the other side, with nothing more written after them (the compressor
// flushes each frame instead of waiting to fill a block).
func TestCompressedInteractive(t *testing.T) {
	p := compressSessions(t, true, true)
	go echoServer(p.client)
	st, err := p.server.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, 64)
	for i := range 200 {
		msg := []byte(fmt.Sprintf("keystroke %d", i))
		st.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := st.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(st, buf[:len(msg)]); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if !bytes.Equal(buf[:len(msg)], msg) {
			t.Fatalf("round trip %d: got %q", i, buf[:len(msg)])
		}
	}
}

// TestCompressedSessionsOverConnTypes runs compressed sessions over a
// pipe, TCP and TLS, below the multiplexer as Accept and Dial put it.
func TestCompressedSessionsOverConnTypes(t *testing.T) {
	for _, k := range []struct {
		name string
		cp   connPair
	}{{"Pipe", pipeConns}, {"TCP", tcpConns}, {"TLS", tlsConns}} {
		t.Run(k.name, func(t *testing.T) {
			c, s := k.cp(t)
			cs, err := NewClientSession(newZstdConn(c), Options{})
			if err != nil {
				t.Fatal(err)
			}
			ss, err := NewServerSession(newZstdConn(s), Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close(); ss.Close() })
			go echoServer(cs)
			roundTrip(t, &compressedPair{client: cs, server: ss}, jsonLines(256<<10))
			roundTrip(t, &compressedPair{client: cs, server: ss}, []byte("x"))
		})
	}
}

// byteConn is a read-only conn over fixed bytes.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (c *byteConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestZstdConnRefusesLargeWindow: a peer that declares a window above the
// limit is refused instead of costing memory.
func TestZstdConnRefusesLargeWindow(t *testing.T) {
	var stream bytes.Buffer
	enc, err := zstd.NewWriter(&stream, zstd.WithWindowSize(8<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(jsonLines(64 << 10))
	enc.Flush()
	c := newZstdConn(&byteConn{r: &stream})
	_, err = io.Copy(io.Discard, c)
	if err == nil {
		t.Fatal("an 8 MiB window was accepted")
	}
	if !errors.Is(err, zstd.ErrWindowSizeExceeded) {
		t.Logf("refused with %v", err)
	}
}

// TestZstdConnWriteError: a failing connection fails the write.
func TestZstdConnWriteError(t *testing.T) {
	c := newZstdConn(failConn{})
	if _, err := c.Write([]byte("hello")); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("Write on a broken conn: %v", err)
	}
}

// FuzzZstdConnRead feeds arbitrary bytes to the decompressing side: it
// must return data or an error, never panic, and never produce more than
// the reader asks for at a time.
func FuzzZstdConnRead(f *testing.F) {
	var valid bytes.Buffer
	c := newZstdConn(&writeOnlyConn{w: &valid})
	c.Write([]byte("hello, hello, hello"))
	c.Write(jsonLines(4 << 10))
	f.Add(valid.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newZstdConn(&byteConn{r: bytes.NewReader(in)})
		buf := make([]byte, 32<<10)
		total := 0
		for total < 64<<20 {
			n, err := c.Read(buf)
			if n > len(buf) {
				t.Fatalf("Read returned %d for a %d-byte buffer", n, len(buf))
			}
			total += n
			if err != nil {
				return
			}
		}
	})
}

type writeOnlyConn struct {
	net.Conn
	w io.Writer
}

func (c *writeOnlyConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// TestZstdConnFrames pins what spec.md allows a sender: several zstd
// frames one after another, and skippable frames between them.
func TestZstdConnFrames(t *testing.T) {
	var stream bytes.Buffer
	for i, part := range []string{"first frame, ", "second frame"} {
		if i == 1 {
			// A skippable frame: magic 0x184D2A50, length 4, 4 bytes.
			stream.Write([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 's', 'k', 'i', 'p'})
		}
		enc, err := zstd.NewWriter(&stream, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(i == 0))
		if err != nil {
			t.Fatal(err)
		}
		enc.Write([]byte(part))
		enc.Close()
	}
	got, err := io.ReadAll(newZstdConn(&byteConn{r: &stream}))
	if string(got) != "first frame, second frame" {
		t.Fatalf("decoded %q, %v", got, err)
	}
}
