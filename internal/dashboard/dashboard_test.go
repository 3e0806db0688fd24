package dashboard

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/inspect"
)

func screen(lines []Line, w int) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.String(w, false))
		b.WriteByte('\n')
	}
	return b.String()
}

func TestRenderOnlineWithRequests(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &client.Status{State: "online", Server: "ws://127.0.0.1:8081", LatencyMS: 1.25, Uptime: "1m0s",
		Tunnels: []*client.TunnelStatus{{Name: "http", URL: "http://a.localhost:8080", Target: "http://localhost:3000", Requests: 2, BytesOut: 2048}}}
	reqs := []inspect.Summary{
		{ID: 2, Start: now, Done: true, DurationMS: 12.5, Method: "POST", Path: "/orders", Status: 201},
		{ID: 1, Start: now, Done: false, Method: "GET", Path: "/slow\x1b[2J"},
	}
	d := New(Options{Status: func() *client.Status { return st }, Requests: func(n int) []inspect.Summary { return reqs[:min(n, len(reqs))] },
		InspectURL: "http://127.0.0.1:4040", Clock: func() time.Time { return now }})
	out := screen(d.Render(100, 40), 100)
	for _, want := range []string{"Session Status    online", "Latency           1.2 ms", "Web Interface     http://127.0.0.1:4040",
		"Forwarding        http://a.localhost:8080 -> http://localhost:3000", "POST    /orders", "201 Created", "12.5ms", "2.0 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("screen lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a control character from a request path reached the screen")
	}
}

func TestRenderReconnectingAndFits(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	st := &client.Status{State: "reconnecting", LastError: "connection to server lost", RetryAttempt: 3,
		NextRetry: now.Add(2 * time.Second).UTC().Format(time.RFC3339Nano), Tunnels: []*client.TunnelStatus{{Name: "http", Target: "http://localhost:3000"}}}
	d := New(Options{Status: func() *client.Status { return st }, Requests: func(n int) []inspect.Summary { return nil }, Clock: func() time.Time { return now }})
	d.Event(client.Event{Kind: client.EventDisconnected, Err: errors.New("connection to server lost")})
	d.Event(client.Event{Kind: client.EventRetrying, Attempt: 3, RetryIn: 2 * time.Second})
	d.LogWriter().Write([]byte("level=WARN msg=disconnected\n"))
	lines := d.Render(60, 12)
	if len(lines) > 12 {
		t.Errorf("%d lines for a 12-line terminal", len(lines))
	}
	out := screen(d.Render(200, 60), 200)
	for _, want := range []string{"reconnecting (attempt 3, next retry 03:04:07, in 2s)", "Last Error        connection to server lost",
		"reconnect attempt 3 at 03:04:07 (in 2s)", "level=WARN msg=disconnected"} {
		if !strings.Contains(out, want) {
			t.Errorf("screen lacks %q:\n%s", want, out)
		}
	}
	for _, l := range lines {
		if n := len([]rune(l.String(60, true))); n > 60 && !strings.Contains(l.String(60, true), "\x1b") {
			t.Errorf("line wider than 60: %q", l.String(60, true))
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRunRestoresTheTerminal(t *testing.T) {
	var out syncBuf
	d := New(Options{Out: &out, Status: func() *client.Status { return &client.Status{State: "connecting"} }, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	s := out.String()
	if !strings.HasPrefix(s, enterAlt+hideCursor) || !strings.HasSuffix(s, showCursor+leaveAlt) {
		t.Errorf("terminal not set up and restored: %q", s)
	}
	if strings.Count(s, "Session Status") != 1 {
		t.Errorf("an unchanged screen was drawn %d times", strings.Count(s, "Session Status"))
	}
}
