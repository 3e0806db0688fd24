package client_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
	"github.com/porthole/porthole/internal/tunneltest"
)

// scriptedServer accepts one client session and hands it to script, which
// plays the server's side of the protocol by hand.
func scriptedServer(t *testing.T, script func(t *testing.T, mux *transport.Session)) string {
	t.Helper()
	done := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux, err := transport.Accept(w, r, transport.Options{})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer mux.Close()
		defer close(done)
		script(t, mux)
	}))
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the scripted server did not finish")
		}
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// TestClientAgainstMisbehavingServer: the client survives bad streams and
// unknown messages from a server, answers pings, and stops on a final
// notice with the server's reason.
func TestClientAgainstMisbehavingServer(t *testing.T) {
	app := startApp(t, "through a scripted server")
	url := scriptedServer(t, func(t *testing.T, mux *transport.Session) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctrl, err := mux.AcceptStreamWithContext(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		ctrl.SetDeadline(time.Now().Add(15 * time.Second))
		w, r := protocol.NewWriter(ctrl), protocol.NewReader(ctrl)
		hello, err := protocol.Expect[*protocol.Hello](r)
		if err != nil || hello.Version != protocol.Version || len(hello.ResumeToken) < 16 {
			t.Errorf("hello %+v %v", hello, err)
			return
		}
		w.Write(&protocol.Welcome{SessionID: "s", HeartbeatMillis: 1000})
		var bind *protocol.Bind
		for bind == nil {
			m, err := r.Read()
			if err != nil {
				t.Errorf("waiting for bind: %v", err)
				return
			}
			bind, _ = m.(*protocol.Bind)
		}
		if bind.Kind != "http" || bind.Name != "web" {
			t.Errorf("bind %+v", bind)
		}
		w.Write(&protocol.Bound{ID: bind.ID, TunnelID: "t1", Hostname: "web.test", URLs: []string{"http://web.test"}})

		// A stream with a broken header, and one for a tunnel the client
		// does not have: the client closes both.
		for _, hdr := range [][]byte{{9, 0, 2, '{', '}'}, streamHeader(t, "no-such-tunnel")} {
			st, err := mux.OpenStream()
			if err != nil {
				t.Error(err)
				return
			}
			st.Write(hdr)
			st.SetReadDeadline(time.Now().Add(15 * time.Second))
			if n, err := st.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("stream with header %q: read %d, %v; want the client to close it", hdr, n, err)
			}
			st.Close()
		}
		// A frame of a type from the future, then a ping: the client
		// skips the first and answers the second.
		ctrl.Write([]byte{0x7e, 0, 0, 0, 2, '{', '}'})
		w.Write(&protocol.Ping{Seq: 4242, UnixNano: 7})
		for {
			m, err := r.Read()
			if err != nil {
				t.Errorf("waiting for the pong: %v", err)
				return
			}
			if p, ok := m.(*protocol.Pong); ok && p.Seq == 4242 {
				if p.UnixNano != 7 {
					t.Errorf("pong %+v does not echo the ping", p)
				}
				break
			}
		}
		// The session still works: a good stream reaches the app.
		st, err := mux.OpenStream()
		if err != nil {
			t.Error(err)
			return
		}
		st.Write(streamHeader(t, "t1"))
		io.WriteString(st, "GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(st), nil)
		if err != nil {
			t.Errorf("request over the stream: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "through a scripted server" {
			t.Errorf("response %d %q", resp.StatusCode, body)
		}
		st.Close()
		w.Write(&protocol.Notice{Kind: protocol.NoticeRevoked, Message: "key revoked by an operator", Final: true})
		io.Copy(io.Discard, ctrl) // until the client hangs up
	})
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(url), tunneltest.HTTP("web", app.URL))
	if got := c.WaitURL(t, "web"); got != "http://web.test" {
		t.Fatalf("URL %q", got)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the client did not stop on a final notice")
	}
	var fe *client.FinalError
	if err := c.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "key revoked by an operator") {
		t.Fatalf("Run returned %v, want a final error with the server's reason", err)
	}
	if !c.Logs.Contains("bad stream from server") {
		t.Error("the client did not log the broken stream header")
	}
}

func streamHeader(t *testing.T, tunnelID string) []byte {
	var b strings.Builder
	if err := protocol.WriteStreamHeader(&b, &protocol.StreamHeader{TunnelID: tunnelID}); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// TestClientRetriesRetryableErrors: a server that refuses with a retryable
// error (shutting down) is tried again; a final one is not.
func TestClientRetriesRetryableErrors(t *testing.T) {
	attempts := make(chan struct{}, 100)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts <- struct{}{}
		if len(attempts) < 3 {
			protocol.WriteRefusal(w, http.StatusServiceUnavailable, protocol.Err(protocol.CodeShuttingDown, false, "restarting"))
			return
		}
		protocol.WriteRefusal(w, http.StatusUnauthorized, protocol.Err(protocol.CodeUnauthorized, true, "no such key"))
	}))
	defer hs.Close()
	app := startApp(t, "x")
	c := tunneltest.StartClient(t, tunneltest.ClientConfig("ws"+strings.TrimPrefix(hs.URL, "http")), tunneltest.HTTP("web", app.URL))
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("client did not stop on the final refusal")
	}
	var fe *client.FinalError
	if err := c.Err(); !errors.As(err, &fe) || !strings.Contains(err.Error(), "no such key") {
		t.Fatalf("Run returned %v", err)
	}
	if n := len(attempts); n != 3 {
		t.Fatalf("%d connection attempts, want 2 retryable refusals and 1 final", n)
	}
}
