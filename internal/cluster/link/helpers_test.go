package link

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

var (
	testSecret  = []byte("correct horse battery staple, a cluster secret\n")
	otherSecret = []byte("another cluster's secret entirely, 0123456789")
)

// holder is a real Handler: it serves a claim for one generation and
// records what it was given.
type holder struct {
	gen  atomic.Uint64
	http http.Handler
	tcp  func(c net.Conn) error

	mu    sync.Mutex
	hosts []string
	reqs  []*http.Request
	tcpIn []netip.AddrPort
}

func newHolder(h http.Handler) *holder {
	hd := &holder{http: h}
	hd.gen.Store(1)
	return hd
}

func (h *holder) ServeForwardedHTTP(w http.ResponseWriter, r *http.Request, host string, gen uint64) error {
	if gen != h.gen.Load() {
		return ErrStale
	}
	h.mu.Lock()
	h.hosts = append(h.hosts, host)
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
	h.http.ServeHTTP(w, r)
	return nil
}

func (h *holder) ServeForwardedTCP(c net.Conn, port int, gen uint64, visitor netip.AddrPort) error {
	if gen != h.gen.Load() {
		return ErrStale
	}
	if port != 7000 {
		return errors.New("no tunnel on that port")
	}
	h.mu.Lock()
	h.tcpIn = append(h.tcpIn, visitor)
	h.mu.Unlock()
	return h.tcp(c)
}

func (h *holder) lastRequest() *http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) == 0 {
		return nil
	}
	return h.reqs[len(h.reqs)-1]
}

func testLogger(t testing.TB) *zap.Logger {
	if tt, ok := t.(*testing.T); ok {
		return zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	return zap.NewNop()
}

// startServer runs a link server for h on a loopback port until the test
// ends.
func startServer(t testing.TB, secret []byte, h Handler, tune func(*Server)) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(secret, h, testLogger(t))
	if tune != nil {
		tune(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().String()
}

func newDialer(t testing.TB, secret []byte) *Dialer {
	d := NewDialer(secret, "node-a", testLogger(t))
	t.Cleanup(func() { d.Close() })
	return d
}

// front is the node a visitor reaches: its public handler forwards
// every request to the holder at addr. A stale answer is retried once
// with the generation refresh returns, as the cluster does.
type front struct {
	*httptest.Server
	errs    chan error
	refresh func() uint64
}

func startFront(t testing.TB, d *Dialer, addr string, gen uint64) *front {
	f := &front{errs: make(chan error, 1000)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// So that a test can see the link stream both ways at once; an
		// HTTP/1 server otherwise answers only after the request body.
		http.NewResponseController(w).EnableFullDuplex()
		err := d.ForwardHTTP(w, r, addr, "app.example.test", gen)
		if errors.Is(err, ErrStale) && f.refresh != nil {
			err = d.ForwardHTTP(w, r, addr, "app.example.test", f.refresh())
		}
		if errors.Is(err, ErrStale) {
			w.Header().Set("X-Test-Stale", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		select {
		case f.errs <- err:
		default:
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func client(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
