package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// compressRelay forwards connections to target and counts the bytes that
// cross it both ways: the tunnel's bytes on the wire, when a client's
// --server points at it.
type compressRelay struct {
	ln     net.Listener
	target string
	n      atomic.Int64
	mu     sync.Mutex
	conns  []net.Conn
}

func startCompressRelay(t *testing.T, target string) *compressRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &compressRelay{ln: ln, target: target}
	go r.serve()
	t.Cleanup(r.close)
	return r
}

func (r *compressRelay) wsURL() string { return "ws://" + r.ln.Addr().String() }

func (r *compressRelay) bytes() int64 { return r.n.Load() }

func (r *compressRelay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

func (r *compressRelay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.n.Add(int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (r *compressRelay) close() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// compressJSON returns about n bytes of JSON records, the kind of text an
// API sends.
func compressJSON(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"user":"user-%d","email":"user-%d@example.com","plan":"%s","active":%t,"balance_cents":%d}`+"\n",
			i, i%311, i%307, []string{"free", "pro", "team"}[i%3], i%4 != 0, (i*7919)%100000)
	}
	return b.Bytes()[:n]
}

// compressEchoRoundTrip sends data through a tcp tunnel to an echo app
// and checks it comes back whole. It returns the relay's byte count for
// the exchange.
func compressEchoRoundTrip(t *testing.T, relay *compressRelay, public string, data []byte) int64 {
	t.Helper()
	before := relay.bytes()
	c := tcpDial(t, public)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), len(data))
	}
	return relay.bytes() - before
}
