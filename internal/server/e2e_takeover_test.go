package server_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestReconnectBeforeOldSessionDies: the client's side of the connection
// drops while the server still believes the old session is up. The client
// reconnects at once; the server ends the stale session as soon as the same
// client's new one says hello (requests sent on it would otherwise hang
// until the heartbeat gave up), and that cleanup must not take the name
// away from the new session.
func TestReconnectBeforeOldSessionDies(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Tunnel.Heartbeat = config.Duration(3 * time.Second) })
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	waitStatus(t, srv, url, 200, 5*time.Second)

	from := len(c.Events())
	proxy.CutClientSide()
	// Wait for the client to be back (a visitor request sent before that
	// would go to the stale session and wait for it to be found dead).
	c.WaitEvent(t, from, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventConnected })
	for deadline := time.Now().Add(10 * time.Second); !c.Status().Tunnels[0].Bound; {
		if time.Now().After(deadline) {
			t.Fatal("the client did not bind again after reconnecting")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, body, err := srv.Get(url); err != nil || resp.StatusCode != 200 || body != "app" {
		t.Fatalf("after the takeover the URL answers %v %q %v", statusOf(resp), body, err)
	}
	if srv.Logs.Contains("client silent") {
		t.Fatal("the stale session was found dead by its heartbeat: this run did not test a takeover")
	}
	if !srv.Logs.Contains("replaced by a newer session of the same client") {
		t.Fatal("the stale session was not ended when the client's new session arrived")
	}
	time.Sleep(200 * time.Millisecond) // let its cleanup finish
	if resp, body, err := srv.Get(url); err != nil || resp.StatusCode != 200 || body != "app" {
		t.Fatalf("after the stale session's cleanup the URL answers %v %q %v", statusOf(resp), body, err)
	}
	for name, want := range map[string]float64{"porthole_sessions": 1, "porthole_tunnels": 1} {
		if n, err := srv.Metric(name); err != nil || n != want {
			t.Errorf("%s = %v (%v), want %v", name, n, err, want)
		}
	}
	if st := c.Status(); st.Tunnels[0].URL != url {
		t.Fatalf("URL changed to %s", st.Tunnels[0].URL)
	}
}

// TestSlowReaderDoesNotStallOthers: a visitor that stops reading a large
// download holds up only its own stream.
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			chunk := make([]byte, 64<<10)
			for i := 0; i < 1024; i++ { // 64 MiB, far more than any window
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		io.WriteString(w, "small")
	})
	resp, err := srv.Visitor().Get(url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.ReadFull(resp.Body, make([]byte, 1024)) // then stop reading
	time.Sleep(300 * time.Millisecond)         // let the windows fill up

	if d := getAtOnce(t, srv.Visitor(), url, "small", 20, "small"); d > 10*time.Second {
		t.Fatalf("small requests took %s next to a stalled download", d)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("big download: %d", resp.StatusCode)
	}
}
