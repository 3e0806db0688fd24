package server_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/store"
	"github.com/porthole/porthole/internal/transport"
	"github.com/porthole/porthole/internal/tunneltest"
)

// idServer is a server with authentication on: a real SQLite store, the
// real auth.Service and auth.Policy, and the revocation watcher, as
// `porthole server` wires them.
type idServer struct {
	*server.Server
	Cfg     server.Config
	Logs    *tunneltest.Logs
	Store   store.Store
	Auth    *auth.Service
	Policy  *auth.Policy
	DataDir string
}

// idOptions change how startIDServer builds the server.
type idOptions struct {
	cfg func(*server.Config)
	// wrap, when set, wraps the authenticator the server uses (to hold a
	// handshake at a chosen point).
	wrap func(auth.Authenticator) auth.Authenticator
	// wrapPolicy, when set, wraps the naming policy the same way.
	wrapPolicy func(server.Policy) server.Policy
	// noWatcher leaves the revocation watcher off.
	noWatcher bool
}

func startIDServer(t *testing.T, o idOptions) *idServer {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.TunnelAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Domain = "tun.test"
	cfg.HTTP.ShutdownTimeout = config.Duration(5 * time.Second)
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(cfg.DataDir, "porthole.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log, logs := tunneltest.NewLogger(t, "server")
	svc, err := auth.New(cfg.Auth, auth.Options{Store: st, DataDir: cfg.DataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pol := auth.NewPolicy(cfg.Auth, auth.PolicyOptions{Store: st, Logger: log})
	var a auth.Authenticator = svc
	if o.wrap != nil {
		a = o.wrap(svc)
	}
	var p server.Policy = pol
	if o.wrapPolicy != nil {
		p = o.wrapPolicy(pol)
	}
	srv, err := server.New(cfg, server.Deps{Logger: log, Auth: a, Policy: p, Ready: st.Ping, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s := &idServer{Server: srv, Cfg: cfg, Logs: logs, Store: st, Auth: svc, Policy: pol, DataDir: cfg.DataDir}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if !o.noWatcher {
		w, err := auth.NewWatcher(ctx, st, srv, 100*time.Millisecond, log)
		if err != nil {
			t.Fatal(err)
		}
		go func() { defer close(done); w.Run(wctx) }()
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Shutdown()
	})
	return s
}

// user adds a user and returns an API key for them.
func (s *idServer) user(t *testing.T, name string) (key, keyID string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Store.GetUser(ctx, name); err != nil {
		if _, err := s.Store.CreateUser(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	key, id, hash := auth.NewAPIKey()
	if _, err := s.Store.CreateAPIKey(ctx, store.NewAPIKey{ID: id, User: name, Hash: hash}); err != nil {
		t.Fatal(err)
	}
	return key, id
}

// clientConfig is a test client config carrying one credential.
func (s *idServer) clientConfig(apiKey, token string) client.Config {
	cfg := tunneltest.ClientConfig(tunneltest.WSURL(s.TunnelAddr().String()))
	cfg.APIKey, cfg.Token = apiKey, token
	return cfg
}

// visitor is an HTTP client that sends every request to the public
// listener.
func (s *idServer) visitor(t *testing.T) *http.Client {
	return tunneltest.Visitor(t, s.HTTPAddr().String())
}

// sessions is the number of connected sessions.
func (s *idServer) sessions() int { return len(s.Sessions()) }

// metricValue reads one series from the server's /metrics.
func metricValue(t *testing.T, s *idServer, series string) (float64, error) {
	t.Helper()
	return (&tunneltest.Server{Server: s.Server}).Metric(series)
}

// freePortRange finds n consecutive loopback ports that are free now.
func freePortRange(t *testing.T, n int) (lo, hi int) {
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
		var held []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return base, base + n - 1
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0, 0
}

// dialAs opens a raw control session with a bearer credential (an API
// key or a token) and says hello.
func (s *idServer) dialAs(t *testing.T, bearer string) *rawSession {
	t.Helper()
	mux, err := transport.Dial(context.Background(), tunneltest.WSURL(s.TunnelAddr().String()), transport.DialOptions{
		Timeout: 5 * time.Second, Header: http.Header{"Authorization": {"Bearer " + bearer}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	ctrl, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.SetDeadline(time.Now().Add(20 * time.Second))
	rs := &rawSession{mux: mux, ctrl: ctrl, w: protocol.NewWriter(ctrl), r: protocol.NewReader(ctrl)}
	rs.hello(t)
	return rs
}

// bind sends b and returns the answer: a *protocol.Bound or a
// *protocol.Error. Pings on the way are skipped.
func (rs *rawSession) bind(t *testing.T, b protocol.Bind) (*protocol.Bound, *protocol.Error) {
	t.Helper()
	if err := rs.w.Write(&b); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := rs.r.Read()
		if err != nil {
			t.Fatalf("bind %+v: %v", b, err)
		}
		switch m := m.(type) {
		case *protocol.Bound:
			return m, nil
		case *protocol.Error:
			return nil, m
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
