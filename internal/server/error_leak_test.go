package server_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/tunneltest"
)

// errorID finds the id an internal error answer carries.
var errorID = regexp.MustCompile(`error id ([0-9a-f]{12})`)

// TestStoreErrorsNotEchoed: with the database gone (closed under the
// server), a client's handshake and the readiness probe answer a generic
// message with an error id; the database's own error text, which names
// the driver, files, hosts or users, stays in the server log under that
// id.
func TestStoreErrorsNotEchoed(t *testing.T) {
	srv := startIDServer(t, idOptions{noWatcher: true})
	key, _ := srv.user(t, "alice")
	srv.Store.Close()
	leaks := []string{"sql:", "database is closed", "sqlite", "porthole.db"}
	checkAnswer := func(t *testing.T, what, answer string) {
		t.Helper()
		for _, l := range leaks {
			if strings.Contains(strings.ToLower(answer), l) {
				t.Fatalf("%s shows the database's error (%q): %s", what, l, answer)
			}
		}
		m := errorID.FindStringSubmatch(answer)
		if m == nil {
			t.Fatalf("%s carries no error id: %s", what, answer)
		}
		line := logLine(srv.Logs.String(), m[1])
		if line == "" || !strings.Contains(line, "database is closed") {
			t.Fatalf("the server log has no line with error id %s and the database's error:\n%s", m[1], srv.Logs.String())
		}
	}

	t.Run("handshake", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, tunneltest.WSURL(srv.TunnelAddr().String()), &websocket.DialOptions{
			Subprotocols: []string{protocol.Subprotocol},
			HTTPHeader:   http.Header{"Authorization": {"Bearer " + key}},
		})
		if err == nil || resp == nil {
			t.Fatalf("handshake with the store closed: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		e, ok := protocol.DecodeRefusal(body)
		if !ok || e.Code != protocol.CodeInternal || e.Final || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("got %d %s, want 503 with a retryable internal error", resp.StatusCode, body)
		}
		checkAnswer(t, "the handshake refusal", e.Message)
	})
	t.Run("readyz", func(t *testing.T) {
		resp, body, err := tunneltest.Get(http.DefaultClient, "http://"+srv.AdminAddr().String()+"/readyz")
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz: %v %v", statusOf(resp), err)
		}
		checkAnswer(t, "/readyz", body)
	})
}
