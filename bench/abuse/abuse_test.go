package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
)

// A smoke test of the attack helpers against an in-process server: each
// does what the benchmark counts on it to do (the frame floods get cut
// off, the slowloris connection is closed, the idle connection is
// accepted). The benchmark itself measures the real binary.

func startServer(t *testing.T, tweak func(*server.Config)) params {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.NoAuth, cfg.Domain, cfg.DataDir = true, domain, t.TempDir()
	cfg.HTTPAddr, cfg.TunnelAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := server.New(cfg, server.Deps{Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	return params{HTTP: srv.HTTPAddr().String(), Tunnel: srv.TunnelAddr().String(), Domain: domain}
}

func TestFrameFloodsAreCutOff(t *testing.T) {
	p := startServer(t, nil)
	for _, k := range append([]frameKind{pingKind}, floodKinds...) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c := newCounters()
		err := floodSession(ctx, p, c, k)
		cancel()
		if got := c.snapshot(); err != nil || got[k.name+"_cut"] != 1 {
			t.Errorf("%s: %v, counts %v; want the session cut off", k.name, err, got)
		}
	}
}

func TestVisitorHelpers(t *testing.T) {
	p := startServer(t, func(c *server.Config) { c.HTTP.ReadHeaderTimeout = config.Duration(300 * time.Millisecond) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := newCounters()
	conn, _, err := idleConn(ctx, idleAddrs[0], p, c)
	if err != nil {
		t.Fatalf("idle connection: %v, counts %v", err, c.snapshot())
	}
	conn.Close()
	var open atomic.Int64
	slowConn(ctx, slowlorisAddrs[0], p, c, &open)
	if got := c.snapshot(); got["accepted"] != 1 || got["closed"] != 1 {
		t.Fatalf("counts %v; want one idle connection accepted, one slowloris connection closed", got)
	}
}

func TestSprayAddrsDistinct(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for i := range 200_000 {
		a := sprayAddr(i)
		if seen[a] || !a.IsLoopback() || a.As4()[1] == 0 || a.As4()[3] == 0 || a.As4()[3] == 255 {
			t.Fatalf("sprayAddr(%d) = %s: repeated, not loopback or a reserved one", i, a)
		}
		seen[a] = true
	}
}
