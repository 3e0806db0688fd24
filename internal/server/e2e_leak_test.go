package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestNoGoroutineOutlivesSession runs sessions with every kind of traffic
// against a server that stays up, ends them (cleanly, and by cutting the
// connection), and checks that every goroutine they started is gone: on the
// server, in the client, and in between.
func TestNoGoroutineOutlivesSession(t *testing.T) {
	srv := tunneltest.StartServer(t)
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err == nil {
				c.Write(r.Context(), typ, msg)
			}
			c.Close(websocket.StatusNormalClosure, "")
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: x\n\n")
		default:
			io.Copy(w, r.Body)
		}
	})
	// Let the listeners' goroutines settle before taking the snapshot.
	time.Sleep(100 * time.Millisecond)
	baseline := goleak.IgnoreCurrent()

	for _, end := range []string{"stop", "cut"} {
		t.Run(end, func(t *testing.T) {
			c := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(proxy.Addr())), tunneltest.HTTP("web", app.URL))
			url := c.WaitURL(t, "web")
			vis := tunneltest.Visitor(t, srv.PublicAddr())
			traffic(t, vis, url)
			switch end {
			case "stop":
				c.Stop()
			case "cut":
				proxy.Refuse(true)
				proxy.Cut()
				c.WaitEvent(t, 0, 10*time.Second, func(e client.Event) bool { return e.Kind == client.EventDisconnected })
				c.Stop()
				proxy.Refuse(false)
			}
			vis.Transport.(*http.Transport).CloseIdleConnections()
			// net/http lingers up to 500 ms on a closing connection so
			// the peer reads the last response before a reset; allow
			// for it (goleak.Find itself retries for about 0.4 s).
			var err error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if err = goleak.Find(baseline); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("goroutines outlived the %s of a session:\n%v", end, err)
			}
		})
	}
}

func traffic(t *testing.T, vis *http.Client, url string) {
	t.Helper()
	for _, path := range []string{"/plain", "/sse"} {
		if resp, _, err := tunneltest.Get(vis, url+path); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, statusOf(resp), err)
		}
	}
	resp, err := vis.Post(url+"/upload", "text/plain", strings.NewReader(strings.Repeat("u", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: vis})
	if err != nil {
		t.Fatal(err)
	}
	ws.Write(ctx, websocket.MessageText, []byte("hi"))
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "hi" {
		t.Fatalf("websocket: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
}
