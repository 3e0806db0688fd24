package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// h2cVisitor returns a client that speaks HTTP/2 with prior knowledge to
// addr for every URL.
func h2cVisitor(t *testing.T, addr string) *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: p,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// startH2CApp serves h on loopback with HTTP/1.1 and cleartext HTTP/2.
func startH2CApp(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trailerApp answers with its protocol and the request's trailer, and
// sends trailers of its own: one announced, one not.
func trailerApp(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Trailer", "X-Announced")
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, r.Proto+" body="+string(body)+" req-trailer="+r.Trailer.Get("X-Req-Sum"))
	w.Header().Set("X-Announced", "yes")
	w.Header().Set(http.TrailerPrefix+"X-Unannounced", "also")
}

// TestH2CThroughTunnel: a visitor speaking cleartext HTTP/2 (server
// --h2c) reaches an h2c app (--upstream-protocol h2c); request and
// response trailers of a plain, non-gRPC exchange arrive on both sides.
// An HTTP/1.1 visitor of the same tunnel gets the trailers in its
// chunked body, and an HTTP/1.1 app with the default upstream protocol
// is served as before, to both kinds of visitor.
func TestH2CThroughTunnel(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.HTTP.H2C = true })
	h2App := startH2CApp(t, http.HandlerFunc(trailerApp))
	h1App := startApp(t, trailerApp).Listener.Addr().String()

	cfg := tunneltest.ClientConfig(tunneltest.WSURL(srv.TunnelAddr().String()))
	h2Spec := tunneltest.HTTP("h2", "http://"+h2App)
	h2Spec.Config.UpstreamProtocol = "h2c"
	cl := tunneltest.StartClient(t, cfg, h2Spec, tunneltest.HTTP("h1", h1App))
	h2URL, h1URL := cl.WaitURL(t, "h2"), cl.WaitURL(t, "h1")

	visitors := map[string]*http.Client{"h2c": h2cVisitor(t, srv.PublicAddr()), "http1": srv.Visitor()}
	for _, tc := range []struct{ tunnel, url, appProto string }{{"h2c-app", h2URL, "HTTP/2.0"}, {"http1-app", h1URL, "HTTP/1.1"}} {
		for vname, vc := range visitors {
			t.Run(tc.tunnel+"/"+vname+"-visitor", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, tc.url+"/t", strings.NewReader("hello"))
				req.Trailer = http.Header{"X-Req-Sum": nil}
				req.ContentLength = -1
				// The trailer's value is set once the body is sent, as
				// net/http reads it then.
				req.Body = &trailerSetter{r: strings.NewReader("hello"), set: func() { req.Trailer.Set("X-Req-Sum", "5") }}
				resp, err := vc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				wantVisitor := map[string]int{"h2c": 2, "http1": 1}[vname]
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != wantVisitor {
					t.Fatalf("status %d over %s, want 200 over HTTP/%d", resp.StatusCode, resp.Proto, wantVisitor)
				}
				want := tc.appProto + " body=hello req-trailer=5"
				if string(body) != want {
					t.Fatalf("body %q, want %q", body, want)
				}
				if resp.Trailer.Get("X-Announced") != "yes" || resp.Trailer.Get("X-Unannounced") != "also" {
					t.Fatalf("response trailers %v, want X-Announced: yes and X-Unannounced: also", resp.Trailer)
				}
			})
		}
	}
}

// trailerSetter is a request body that runs set when it ends.
type trailerSetter struct {
	r   io.Reader
	set func()
}

func (b *trailerSetter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.set()
	}
	return n, err
}

func (b *trailerSetter) Close() error { return nil }

// TestH2COffByDefault: without --h2c the plain listener speaks only
// HTTP/1.1; an HTTP/2 preface gets no HTTP/2 answer.
func TestH2COffByDefault(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := startApp(t, trailerApp).Listener.Addr().String()
	cl := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(srv.TunnelAddr().String())), tunneltest.HTTP("h1", app))
	u := cl.WaitURL(t, "h1")
	if resp, err := h2cVisitor(t, srv.PublicAddr()).Get(u); err == nil {
		resp.Body.Close()
		t.Fatalf("h2c visitor without --h2c: %s %d, want a failure", resp.Proto, resp.StatusCode)
	}
	if resp, body, err := srv.Get(u); err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "HTTP/1.1") {
		t.Fatalf("HTTP/1.1 visitor: %v %q %v", statusOf(resp), body, err)
	}
}

// TestH2CLimitsHold: the hardening limits hold for cleartext HTTP/2
// visitors and HTTP/2 apps. The h2c listener advertises the stream and
// header limits of the TLS one (http.max_concurrent_streams,
// http.max_header_bytes); each stream counts as a visitor connection of
// its address; an h2c app's response header block over the server's
// limit, and an app's endless 1xx responses, give the visitor 502; the
// server serves on.
func TestH2CLimitsHold(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) {
		c.HTTP.H2C = true
		c.Limits.VisitorConnectionsPerIP = 5
	})
	release := make(chan struct{})
	app := startH2CApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/1xx":
			// The header is set once: net/http's HTTP/2 server encodes a
			// 1xx header block on another goroutine, so changing the map
			// after WriteHeader(1xx) races inside the standard library.
			w.Header().Set("Link", "</a.css>; rel=preload")
			for range 100 {
				w.WriteHeader(http.StatusEarlyHints)
			}
		case "/big":
			w.Header().Set("X-Big", strings.Repeat("b", 100<<10))
		case "/hold":
			<-release
		}
		io.WriteString(w, "body")
	}))
	spec := tunneltest.HTTP("app", "http://"+app)
	spec.Config.UpstreamProtocol = "h2c"
	cl := tunneltest.StartClient(t, tunneltest.ClientConfig(tunneltest.WSURL(srv.TunnelAddr().String())), spec)
	u := cl.WaitURL(t, "app")
	vc := h2cVisitor(t, srv.PublicAddr())

	for _, path := range []string{"/big", "/1xx"} {
		resp, err := vc.Get(u + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || resp.ProtoMajor != 2 {
			t.Fatalf("%s: %s %d, want 502 over HTTP/2", path, resp.Proto, resp.StatusCode)
		}
	}

	// Five slots for the address: the connection holds one, so four
	// streams reach the app and the rest get 429.
	codes := make(chan int, 10)
	for range 10 {
		go func() {
			resp, err := vc.Get(u + "/hold")
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	refused := 0
	for range 6 {
		if c := <-codes; c == http.StatusTooManyRequests {
			refused++
		} else {
			t.Fatalf("a stream over the address's limit got %d, want 429", c)
		}
	}
	close(release)
	for range 4 {
		if c := <-codes; c != http.StatusOK {
			t.Fatalf("a stream within the limit got %d, want 200", c)
		}
	}
	if resp, body, err := tunneltest.Get(vc, u+"/"); err != nil || resp.StatusCode != http.StatusOK || body != "body" {
		t.Fatalf("after the refusals: %v %q %v", statusOf(resp), body, err)
	}

	streams, headerBytes := h2cSettings(t, srv.PublicAddr())
	if streams != 100 || headerBytes == 0 || headerBytes > 64<<10+4096 {
		t.Fatalf("h2c SETTINGS: %d concurrent streams, header list %d bytes; want 100 and about 64 KiB", streams, headerBytes)
	}
}

// h2cSettings reads the stream and header list limits from the
// server's first SETTINGS frame on a cleartext HTTP/2 connection.
func h2cSettings(t *testing.T, addr string) (streams, headerBytes uint32) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			streams, _ = sf.Value(http2.SettingMaxConcurrentStreams)
			headerBytes, _ = sf.Value(http2.SettingMaxHeaderListSize)
			return streams, headerBytes
		}
	}
}
