package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestConcurrentRequests sends 200 requests at once over one tunnel; each
// must get its own answer.
func TestConcurrentRequests(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // keep them overlapping
		fmt.Fprintf(w, "answer to %s", r.URL.Path)
	})
	vis := srv.Visitor()
	const n = 200
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := tunneltest.Get(vis, fmt.Sprintf("%s/req/%d", url, i))
			if err != nil || resp.StatusCode != 200 || body != fmt.Sprintf("answer to /req/%d", i) {
				failed.Add(1)
				t.Errorf("request %d: %v %v %q", i, statusOf(resp), err, body)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d concurrent requests failed", failed.Load(), n)
	}
}

// getAtOnce sends n GETs at once, to url/kind/0 to url/kind/n-1, each of
// which must answer 200 with want, and returns how long they took.
func getAtOnce(t *testing.T, vis *http.Client, url, kind string, n int, want string) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := tunneltest.Get(vis, fmt.Sprintf("%s/%s/%d", url, kind, i))
			if err != nil || resp.StatusCode != 200 || body != want {
				t.Errorf("%s request %d: %v %v %q", kind, i, statusOf(resp), err, body)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

// TestSlowRequestsRunInParallel: 20 requests that each take 2 s finish in
// about 2 s, not 40: one slow request never holds up another.
func TestSlowRequestsRunInParallel(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
		io.WriteString(w, "done")
	})
	if d := getAtOnce(t, srv.Visitor(), url, "slow", 20, "done"); d > 10*time.Second {
		t.Fatalf("20 parallel 2 s requests took %s: they were serialized", d)
	}
}

// TestKeepAliveReusesConnections: rounds of 64 concurrent visitors reuse
// streams and local connections instead of opening one per request.
func TestKeepAliveReusesConnections(t *testing.T) {
	var localConns atomic.Int64
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	app.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			localConns.Add(1)
		}
	}
	app.Start()
	defer app.Close()
	srv := tunneltest.StartServer(t)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	url := c.WaitURL(t, "web")
	vis := srv.Visitor()
	const rounds, width = 5, 64
	for range rounds {
		var wg sync.WaitGroup
		for range width {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, _, err := tunneltest.Get(vis, url); err != nil || resp.StatusCode != 200 {
					t.Errorf("request: %v %v", statusOf(resp), err)
				}
			}()
		}
		wg.Wait()
	}
	streams, err := srv.Metric("porthole_streams_total")
	if err != nil {
		t.Fatal(err)
	}
	// Without reuse every request would cost a stream and a local
	// connection: 320 each. With it, about one round's worth.
	if streams > 2*width || localConns.Load() > 2*width {
		t.Fatalf("%d requests opened %v streams and %d local connections; connections are not reused",
			rounds*width, streams, localConns.Load())
	}
}

func TestChunkedEncoding(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		// Echo a chunked request body back as a chunked response.
		if r.ContentLength != -1 || len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
			http.Error(w, fmt.Sprintf("request not chunked: length %d, encoding %v", r.ContentLength, r.TransferEncoding), 400)
			return
		}
		in, _ := io.ReadAll(r.Body)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d;", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "echo:%s", in)
	})
	pr, pw := io.Pipe()
	go func() {
		for i := range 3 {
			fmt.Fprintf(pw, "part%d,", i)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", url+"/chunked", pr) // unknown length: sent chunked
	resp, err := srv.Visitor().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
		t.Fatalf("response not chunked: %v, length %d", resp.TransferEncoding, resp.ContentLength)
	}
	if want := "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;echo:part0,part1,part2,"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

// TestServerSentEvents: an event arrives while the response is still open.
func TestServerSentEvents(t *testing.T) {
	release := make(chan struct{})
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "data: second\n\n")
	})
	resp, err := srv.Visitor().Get(url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: first\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the first event did not arrive while the response was open: something buffers it")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

// TestWebSocketEcho upgrades through the tunnel and echoes messages.
func TestWebSocketEcho(t *testing.T) {
	srv, _, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: srv.Visitor()})
	if err != nil {
		t.Fatalf("dial through the tunnel: %v (%v)", err, resp)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	for i, m := range []string{"hello", strings.Repeat("x", 200<<10), "bye"} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil || string(got) != "echo: "+m {
			t.Fatalf("message %d: got %d bytes, %v", i, len(got), err)
		}
	}
	if err := ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close handshake through the tunnel: %v", err)
	}
	// The access log line, written when the upgraded connection ends,
	// records the upgrade as such.
	for deadline := time.Now().Add(10 * time.Second); !srv.Logs.Contains("path=/ws status=101"); {
		if time.Now().After(deadline) {
			t.Fatal("the server's access log does not record the WebSocket upgrade as status 101")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardedHeaders: the app learns who the visitor is and sees the
// visitor's own headers; forged forwarding headers are replaced.
func TestForwardedHeaders(t *testing.T) {
	got := make(chan *http.Request, 2)
	srv, c, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Clone(context.Background())
		io.WriteString(w, "ok")
	})
	host := strings.TrimPrefix(url, "http://")
	req, _ := http.NewRequest("GET", url+"/h?q=1", nil)
	req.Header.Set("X-Visitor", "custom value")
	req.Header.Set("Cookie", "session=abc")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	resp, err := srv.Visitor().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	checks := map[string]string{
		"X-Visitor":         "custom value",
		"Cookie":            "session=abc",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  host,
		"Forwarded":         fmt.Sprintf("for=127.0.0.1;host=%q;proto=http", host),
	}
	for k, want := range checks {
		if v := strings.Join(r.Header.Values(k), ", "); v != want {
			t.Errorf("app saw %s: %q, want %q", k, v, want)
		}
	}
	if r.Host != host {
		t.Errorf("app saw Host %q, want the visitor's %q", r.Host, host)
	}
	if r.URL.RequestURI() != "/h?q=1" {
		t.Errorf("app saw %q", r.URL.RequestURI())
	}
	id := r.Header.Get("X-Request-Id")
	if !regexp.MustCompile(`^[0-9a-f]{16,}$`).MatchString(id) {
		t.Errorf("app saw X-Request-Id %q, want a generated id", id)
	}
	if resp.Header.Get("X-Request-Id") != id {
		t.Errorf("visitor got X-Request-Id %q, app got %q", resp.Header.Get("X-Request-Id"), id)
	}
	// The id appears in both sides' access log lines for this request, and
	// the server's line has what an operator needs.
	line := waitLogLine(srv.Logs.String, "request_id="+id)
	for _, field := range []string{"msg=request ", "host=" + strings.Split(host, ":")[0] + " ", "method=GET ", "path=/h ", "status=200 ", "bytes=2 ", "duration="} {
		if !strings.Contains(line, field) {
			t.Errorf("server access log line %q lacks %q", line, field)
		}
	}
	if waitLogLine(c.Logs.String, "request_id="+id) == "" {
		t.Errorf("client log has no line with request_id=%s", id)
	}

	// A visitor's own request id is kept.
	req, _ = http.NewRequest("GET", url, nil)
	req.Header.Set("X-Request-Id", "visitor-chosen-id")
	resp, err = srv.Visitor().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-got; r.Header.Get("X-Request-Id") != "visitor-chosen-id" {
		t.Errorf("app saw X-Request-Id %q, want the visitor's", r.Header.Get("X-Request-Id"))
	}
}

func TestHostRewrite(t *testing.T) {
	hosts := make(chan string, 1)
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host + " " + r.Header.Get("X-Forwarded-Host")
	})
	srv := tunneltest.StartServer(t)
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.HostHeader = "rewrite"
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	url := c.WaitURL(t, "web")
	if resp, _, err := srv.Get(url); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", statusOf(resp), err)
	}
	want := strings.TrimPrefix(app.URL, "http://") + " " + strings.TrimPrefix(url, "http://")
	if got := <-hosts; got != want {
		t.Fatalf("app saw Host and X-Forwarded-Host %q, want %q", got, want)
	}
}

// TestHTTPSTarget reaches a local app with a self-signed certificate, which
// works only with the skip-verify option.
func TestHTTPSTarget(t *testing.T) {
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "secure app, tls=%v", r.TLS != nil)
	}))
	defer app.Close()
	srv := tunneltest.StartServer(t)
	insecure := tunneltest.HTTP("insecure", app.URL)
	insecure.Config.InsecureSkipVerify = true
	strict := client.Spec{Name: "strict", Config: client.TunnelConfig{Proto: "http", Addr: app.URL}}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), insecure, strict)

	resp, body, err := srv.Get(c.WaitURL(t, "insecure"))
	if err != nil || resp.StatusCode != 200 || body != "secure app, tls=true" {
		t.Fatalf("with skip-verify: %v %v %q", statusOf(resp), err, body)
	}
	resp, body, err = srv.Get(c.WaitURL(t, "strict"))
	if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, strings.TrimPrefix(app.URL, "https://")) {
		t.Fatalf("without skip-verify: want 502 naming the app, got %v %v %q", statusOf(resp), err, body)
	}
	if !strings.Contains(body, "certificate") {
		t.Errorf("502 body %q does not say the certificate is the problem", body)
	}
}

// logLine returns the first line of logs that contains s, or "".
// waitLogLine is logLine for a line written once a response is done: the
// visitor can have read the response before the access log line is
// written. It waits up to 5 s.
func waitLogLine(logs func() string, s string) string {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l := logLine(logs(), s); l != "" || time.Now().After(deadline) {
			return l
		}
	}
}

func logLine(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
