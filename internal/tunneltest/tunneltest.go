// Package tunneltest runs a real porthole in-process for tests: a server on
// loopback listeners, clients that tunnel to it, visitors that reach it by
// hostname, and a TCP proxy that can cut or silently drop the connection in
// between. Nothing is mocked: every hop is a socket on 127.0.0.1 or ::1.
//
// Everything a helper starts is stopped by t.Cleanup, so a test that uses
// only this package leaves no goroutine behind. Logs are kept in memory and
// printed when the test fails.
package tunneltest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
)

// Logs collects log output; it is safe for concurrent use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Contains reports whether s was logged.
func (l *Logs) Contains(s string) bool { return strings.Contains(l.String(), s) }

// NewLogger returns a text logger into a fresh Logs that t prints if it
// fails.
func NewLogger(t testing.TB, name string) (*slog.Logger, *Logs) {
	logs := &Logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, logs.String())
		}
	})
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs
}

// Server is a porthole server on loopback.
type Server struct {
	*server.Server
	Cfg  server.Config
	Logs *Logs
	t    testing.TB
	stop sync.Once
}

// StartServer starts a server with --no-auth on 127.0.0.1 ports chosen by
// the system, after applying mods to its config. It shuts down at cleanup.
func StartServer(t testing.TB, mods ...func(*server.Config)) *Server {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.TunnelAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NoAuth = true
	cfg.HTTP.ShutdownTimeout = config.Duration(5 * time.Second)
	for _, m := range mods {
		m(&cfg)
	}
	log, logs := NewLogger(t, "server")
	srv, err := server.New(cfg, server.Deps{Logger: log, Version: "test"})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	s := &Server{Server: srv, Cfg: cfg, Logs: logs, t: t}
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down (once).
func (s *Server) Stop() {
	s.stop.Do(func() {
		if err := s.Server.Shutdown(); err != nil {
			s.t.Errorf("server shutdown: %v", err)
		}
	})
}

// PublicAddr is the public HTTP listener's host:port.
func (s *Server) PublicAddr() string { return s.HTTPAddr().String() }

// Visitor returns an HTTP client that sends every request, whatever its
// URL's host, to the server's public listener, as DNS for *.DOMAIN would.
func (s *Server) Visitor() *http.Client {
	return Visitor(s.t, s.PublicAddr())
}

// Visitor returns an HTTP client that connects to addr for every URL.
func Visitor(t testing.TB, addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// Get fetches url as a visitor and returns the response with its body read.
func (s *Server) Get(url string) (*http.Response, string, error) {
	return Get(s.Visitor(), url)
}

// Get fetches url with c and returns the response with its body read.
func Get(c *http.Client, url string) (*http.Response, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// Metric reads one unlabelled sample, or one labelled like
// `name{label="value"}`, from the admin listener's /metrics.
func (s *Server) Metric(series string) (float64, error) {
	resp, err := http.Get("http://" + s.AdminAddr().String() + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			return strconv.ParseFloat(value, 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", series)
}

// Client is a porthole client running against one or more servers.
type Client struct {
	*client.Client
	Logs   *Logs
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	mu     sync.Mutex
	events []client.Event
	signal chan struct{}
}

// ClientConfig returns a client config for servers with fast reconnects,
// suited to tests.
func ClientConfig(servers ...string) client.Config {
	cfg := client.DefaultConfig()
	cfg.Servers = servers
	cfg.InspectAddr = ""
	cfg.Reconnect.Base = config.Duration(50 * time.Millisecond)
	cfg.Reconnect.Max = config.Duration(500 * time.Millisecond)
	cfg.HandshakeTimeout = config.Duration(5 * time.Second)
	return cfg
}

// HTTP returns a spec for an HTTP tunnel named name to target.
func HTTP(name, target string) client.Spec {
	return client.Spec{Name: name, Config: client.TunnelConfig{Proto: "http", Addr: target}}
}

// StartClient runs a client with cfg and specs until cleanup.
func StartClient(t testing.TB, cfg client.Config, specs ...client.Spec) *Client {
	t.Helper()
	return StartClientDeps(t, cfg, client.Deps{}, specs...)
}

// StartClientDeps is StartClient with deps (TLS for wss:// servers); its
// Logger, Version and OnEvent are set here.
func StartClientDeps(t testing.TB, cfg client.Config, deps client.Deps, specs ...client.Spec) *Client {
	t.Helper()
	log, logs := NewLogger(t, "client")
	c := &Client{Logs: logs, done: make(chan struct{}), signal: make(chan struct{})}
	deps.Logger, deps.Version, deps.OnEvent = log, "test", c.record
	cl, err := client.New(cfg, specs, deps)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	c.Client = cl
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		c.err = cl.Run(ctx)
		close(c.done)
	}()
	t.Cleanup(func() {
		if err := c.Stop(); err != nil && ctx.Err() == nil {
			t.Logf("client ended with: %v", err)
		}
	})
	return c
}

func (c *Client) record(e client.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	close(c.signal)
	c.signal = make(chan struct{})
	c.mu.Unlock()
}

// Events returns the events so far.
func (c *Client) Events() []client.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.Event(nil), c.events...)
}

// WaitEvent waits for an event, from the from-th on, that match accepts,
// and returns it with its index.
func (c *Client) WaitEvent(t testing.TB, from int, timeout time.Duration, match func(client.Event) bool) (client.Event, int) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i := from; i < len(c.events); i++ {
			if match(c.events[i]) {
				e := c.events[i]
				c.mu.Unlock()
				return e, i
			}
		}
		from = len(c.events)
		sig := c.signal
		c.mu.Unlock()
		select {
		case <-sig:
		case <-c.done:
			c.mu.Lock()
			n := len(c.events)
			c.mu.Unlock()
			if n == from {
				t.Fatalf("client stopped (%v) before the awaited event", c.err)
			}
		case <-deadline.C:
			t.Fatalf("no matching client event within %s; events: %s", timeout, c.describeEvents())
		}
	}
}

func (c *Client) describeEvents() string {
	var b strings.Builder
	for _, e := range c.Events() {
		fmt.Fprintf(&b, "\n  kind=%d err=%v", e.Kind, e.Err)
		if e.Tunnel != nil {
			fmt.Fprintf(&b, " url=%s", e.Tunnel.URL)
		}
	}
	return b.String()
}

// WaitURL waits for the tunnel named name to be forwarding (from the
// from-th event on) and returns its public URL.
func (c *Client) WaitURL(t testing.TB, name string) string {
	t.Helper()
	e, _ := c.WaitEvent(t, 0, 15*time.Second, func(e client.Event) bool {
		return e.Kind == client.EventForwarding && e.Tunnel.Name == name
	})
	return e.Tunnel.URL
}

// Stop cancels the client and waits for Run to return its error.
func (c *Client) Stop() error {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		return fmt.Errorf("client did not stop within 15s")
	}
	return c.err
}

// Done is closed when Run has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is what Run returned; valid after Done.
func (c *Client) Err() error {
	<-c.done
	return c.err
}

// WSURL turns a listener address into the ws:// URL a client dials.
func WSURL(addr string) string { return "ws://" + addr }
