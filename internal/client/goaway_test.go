package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
	"github.com/porthole/porthole/internal/tunneltest"
)

// goAwayServer accepts any number of sessions; each is welcomed, has its
// binds answered, gets go_away repeats times and is closed after hold. It
// counts the sessions.
func goAwayServer(t *testing.T, repeats int, hold time.Duration, sessions *atomic.Int64) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux, err := transport.Accept(w, r, transport.Options{})
		if err != nil {
			return
		}
		defer mux.Close()
		sessions.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctrl, err := mux.AcceptStreamWithContext(ctx)
		if err != nil {
			return
		}
		ctrl.SetDeadline(time.Now().Add(hold + 5*time.Second))
		wr, rd := protocol.NewWriter(ctrl), protocol.NewReader(ctrl)
		if _, err := protocol.Expect[*protocol.Hello](rd); err != nil {
			return
		}
		wr.Write(&protocol.Welcome{SessionID: "s", HeartbeatMillis: 1000})
		for {
			m, err := rd.Read()
			if err != nil {
				return
			}
			if b, ok := m.(*protocol.Bind); ok {
				wr.Write(&protocol.Bound{ID: b.ID, TunnelID: "t" + r.Host, Hostname: "web.test", URLs: []string{"http://web.test"}})
				break
			}
		}
		for range repeats {
			if wr.Write(&protocol.GoAway{Reason: "again", DeadlineMillis: 1}) != nil {
				return
			}
		}
		timer := time.AfterFunc(hold, func() { ctrl.Close(); mux.Close() })
		defer timer.Stop()
		for {
			m, err := rd.Read()
			if err != nil {
				return
			}
			if p, ok := m.(*protocol.Ping); ok {
				wr.Write(&protocol.Pong{Seq: p.Seq, UnixNano: p.UnixNano})
			}
		}
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// TestRepeatedGoAwayIsBounded: two servers that answer every session with
// a flood of go_away messages. Held open, the client moves once and
// stays; closed soon after, it reconnects with backoff rather than at
// once. Sessions and goroutines stay bounded either way.
func TestRepeatedGoAwayIsBounded(t *testing.T) {
	app := startApp(t, "app")
	for _, tc := range []struct {
		name        string
		hold        time.Duration
		maxSessions int64
	}{
		{"held open", 10 * time.Second, 2},
		// Each session lasts 100 ms: at most one per 100 ms plus backoff,
		// never one per go_away (1,000 each).
		{"closed after each", 100 * time.Millisecond, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sessions atomic.Int64
			a := goAwayServer(t, 1000, tc.hold, &sessions)
			b := goAwayServer(t, 1000, tc.hold, &sessions)
			before := runtime.NumGoroutine()
			c := tunneltest.StartClient(t, tunneltest.ClientConfig(a, b), tunneltest.HTTP("web", app.URL))
			c.WaitURL(t, "web")
			time.Sleep(3 * time.Second)
			n := sessions.Load()
			peak := runtime.NumGoroutine()
			c.Stop()
			if n > tc.maxSessions {
				t.Errorf("%d sessions in 3 s, want at most %d", n, tc.maxSessions)
			}
			if moves := strings.Count(c.Logs.String(), "moving to another server"); moves != 1 {
				t.Errorf("the client moved at once %d times in 3 s, want 1 (then backoff)", moves)
			}
			if peak-before > 60 {
				t.Errorf("goroutines grew from %d to %d", before, peak)
			}
			t.Logf("%d sessions, goroutines %d -> %d", n, before, peak)
		})
	}
}
