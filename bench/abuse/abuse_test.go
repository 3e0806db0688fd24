package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"

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
	for _, k := range append([]frameKind{pingKind}, floodKinds...) {
		// A server of its own per flood: after a cut the server bars the
		// flooder's address for a while.
		p := startServer(t, nil)
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

func TestSelectAttacks(t *testing.T) {
	all, err := selectAttacks("")
	if err != nil || len(all) != len(attacks) {
		t.Fatalf("all: %d attacks, %v", len(all), err)
	}
	// The run's order, whatever the list's.
	got, err := selectAttacks("slowloris, ping-flood")
	if err != nil || len(got) != 2 || got[0].name != "ping-flood" || got[1].name != "slowloris" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := selectAttacks("ping-flood,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown attack: %v", err)
	}
	for _, a := range attacks {
		if attackFuncs[a.name] == nil || servers[a.server].note == "" || !slices.Contains(serverOrder, a.server) {
			t.Errorf("%s: no attacker function or no server %q", a.name, a.server)
		}
	}
}

func TestBasicAuthVerdict(t *testing.T) {
	r := &attackResult{Name: "basic-auth", Attacker: attackStats{Seconds: 30, Counts: map[string]int64{
		"local_status_429": 1000, "right_while_blocked_429": 100, "right_while_blocked_200": 20}}}
	if s := cutOffShort(r); !strings.HasPrefix(s, "yes") {
		t.Errorf("tries that came back counted as a hole: %s", s)
	}
	r.Attacker.Counts["right_while_blocked_200"] = 1000
	if s := cutOffShort(r); !strings.HasPrefix(s, "NO") {
		t.Errorf("the right password let in while throttled not reported: %s", s)
	}
}

func TestReportRoundTrip(t *testing.T) {
	res := &result{Date: "2026-01-02", Machine: "2 CPUs", Duration: "30s",
		Servers: []*serverResult{{Name: "open", Unloaded: harness.LatencyStats{P99ms: 2}}},
		Attacks: []*attackResult{{Name: "ping-flood", Title: "ping flood", Server: "open", P99Ratio: 1.5,
			LimitHits: map[string]float64{"client_frames": 7},
			Attacker:  attackStats{Counts: map[string]int64{"sessions": 7, "pings_cut": 7}}}}}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	back.print(&out)
	for _, want := range []string{"1. ping flood", "1.50", "yes: 7 of 7 sessions ended (client_frames +7)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestGuessSprayAddrsDistinct(t *testing.T) {
	seen := map[netip.Addr]bool{}
	for i := range 100_000 {
		a := guessSprayAddr(i)
		if seen[a] || !a.IsLoopback() || a.As4()[3] == 0 || a.As4()[3] == 255 {
			t.Fatalf("guessSprayAddr(%d) = %s: repeated, not loopback or a reserved one", i, a)
		}
		seen[a] = true
	}
}
