package server_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
)

// TestHandshakeWithOriginRefused: a web page in a victim's browser opens
// a WebSocket to the tunnel listener; the browser adds an Origin header
// and sends the victim's credentials ambiently. The server answers 403
// before it looks at any credential, and no session comes to exist.
func TestHandshakeWithOriginRefused(t *testing.T) {
	srv := startIDServer(t, idOptions{})
	key, _ := srv.user(t, "alice")
	for _, tc := range []struct{ name, origin, bearer string }{
		{"valid key, foreign origin", "https://evil.example", key},
		{"valid key, same origin", "http://" + srv.TunnelAddr().String(), key},
		{"valid key, null origin", "null", key},
		{"bad key", "https://evil.example", "phk_nope"},
		{"no credential", "https://evil.example", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h := http.Header{"Origin": {tc.origin}}
			if tc.bearer != "" {
				h.Set("Authorization", "Bearer "+tc.bearer)
			}
			ws, resp, err := websocket.Dial(ctx, "ws://"+srv.TunnelAddr().String(), &websocket.DialOptions{
				Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: h,
			})
			if err == nil {
				ws.CloseNow()
				t.Fatal("the handshake with an Origin header was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("got %v (%v), want 403", resp, err)
			}
			body, _ := io.ReadAll(resp.Body)
			e, ok := protocol.DecodeRefusal(body)
			if !ok || e.Code != protocol.CodeForbidden || !e.Final {
				t.Fatalf("refusal body %q", body)
			}
		})
	}
	if n := srv.sessions(); n != 0 {
		t.Fatalf("%d sessions exist after handshakes with an Origin header", n)
	}
	if v, _ := metricValue(t, srv, "porthole_sessions_total"); v != 0 {
		t.Fatalf("porthole_sessions_total = %v, want 0", v)
	}
	// The refusals cost no failed-authentication allowance: the valid key
	// still connects from the same address without an Origin.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+srv.TunnelAddr().String(), &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: http.Header{"Authorization": {"Bearer " + key}},
	})
	if err != nil {
		t.Fatalf("a handshake without Origin: %v", err)
	}
	ws.CloseNow()
}
