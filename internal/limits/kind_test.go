package limits

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLines decodes the JSON log lines written so far.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestHitsThrottleLogs(t *testing.T) {
	clk := newFakeClock()
	var buf bytes.Buffer
	h := NewHits(slog.New(slog.NewJSONHandler(&buf, nil)), 10*time.Second, clk.Now)

	for range 1000 {
		h.Hit(TunnelRequestRate, "host", "a.example")
	}
	h.Hit(ControlRate, "session", "s1")
	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 1000 hits of one kind and one of another, want 2:\n%s", len(lines), buf.String())
	}
	if lines[0]["msg"] != "limit hit" || lines[0]["limit"] != string(TunnelRequestRate) || lines[0]["host"] != "a.example" || lines[0]["level"] != "WARN" {
		t.Fatalf("first line %v", lines[0])
	}
	if _, ok := lines[0]["suppressed"]; ok {
		t.Fatalf("first line reports suppressed hits: %v", lines[0])
	}
	if lines[1]["limit"] != string(ControlRate) {
		t.Fatalf("a second kind is throttled by the first: %v", lines[1])
	}
	if h.Count(TunnelRequestRate) != 1000 || h.Count(ControlRate) != 1 || h.Count(UserTunnels) != 0 {
		t.Fatalf("counts %d %d %d", h.Count(TunnelRequestRate), h.Count(ControlRate), h.Count(UserTunnels))
	}

	// Within the interval: still nothing.
	clk.Advance(9 * time.Second)
	h.Hit(TunnelRequestRate)
	if n := len(logLines(t, &buf)); n != 2 {
		t.Fatalf("logged again after 9s of a 10s interval (%d lines)", n)
	}
	// After it: one line with the number suppressed meanwhile.
	clk.Advance(time.Second)
	h.Hit(TunnelRequestRate, "host", "b.example")
	lines = logLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	if got := lines[2]["suppressed"]; got != float64(1000) {
		t.Fatalf("suppressed = %v, want 1000 (999 then 1)", got)
	}
	if lines[2]["host"] != "b.example" {
		t.Fatalf("the line after the interval describes %v", lines[2]["host"])
	}
	// A quiet period: the next hit logs at once, with nothing suppressed.
	clk.Advance(time.Hour)
	h.Hit(TunnelRequestRate)
	lines = logLines(t, &buf)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4", len(lines))
	}
	if _, ok := lines[3]["suppressed"]; ok {
		t.Fatalf("suppressed reported after a quiet hour: %v", lines[3])
	}
	if h.Count(TunnelRequestRate) != 1003 {
		t.Fatalf("count %d, want 1003", h.Count(TunnelRequestRate))
	}
}

// TestHitsConcurrent: hits from many goroutines are all counted, and the
// log stays at one line per interval.
func TestHitsConcurrent(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	var buf bytes.Buffer
	h := NewHits(slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil)), time.Minute, clk.Now)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5000 {
				h.Hit(VisitorRequestRate)
				h.Hit(Kind("custom_kind"))
			}
		}()
	}
	wg.Wait()
	if h.Count(VisitorRequestRate) != 40_000 || h.Count("custom_kind") != 40_000 {
		t.Fatalf("counts %d %d, want 40000 each", h.Count(VisitorRequestRate), h.Count("custom_kind"))
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(logLines(t, &buf)); n != 2 {
		t.Fatalf("%d log lines, want 2", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestKindsAreLabels pins the kinds: they are metric labels and log
// fields that dashboards and alerts depend on, and docs/limits.md names
// each one.
func TestKindsAreLabels(t *testing.T) {
	want := []string{
		"tunnel_requests_per_second", "tunnel_connections", "user_bandwidth", "session_streams",
		"user_tunnels", "user_sessions", "server_tunnels", "visitor_connections_per_ip",
		"visitor_requests_per_second", "handshakes_per_second_per_ip", "auth_failures_per_ip",
		"control_messages_per_second", "visitor_access_failures_per_ip",
		"visitor_connections", "visitor_write_timeout", "client_frames", "buffer_budget",
	}
	if len(AllKinds) != len(want) {
		t.Fatalf("%d kinds, want %d", len(AllKinds), len(want))
	}
	seen := map[Kind]bool{}
	for i, k := range AllKinds {
		if string(k) != want[i] {
			t.Errorf("kind %d is %q, want %q", i, k, want[i])
		}
		if seen[k] {
			t.Errorf("kind %q listed twice", k)
		}
		seen[k] = true
	}
	// Every kind starts at zero, so metrics show it before the first hit.
	h := NewHits(slog.New(slog.DiscardHandler), time.Second, nil)
	for _, k := range AllKinds {
		if _, ok := h.counts.Load(k); !ok || h.Count(k) != 0 {
			t.Errorf("kind %q not registered at zero", k)
		}
	}
}
