package link

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestForwardGet(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "yes")
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.RequestURI())
	}))
	_, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	f := startFront(t, d, addr, 1)

	req, _ := http.NewRequest("GET", f.URL+"/path?q=1", nil)
	req.Host = "app.example.test:8080"
	// A visitor's own link headers must not reach the holder as such.
	req.Header.Set("Porthole-Link-Visitor", "203.0.113.9:1")
	req.Header.Set("Porthole-Link-Gen", "99")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello app.example.test:8080 /path?q=1" || resp.Header.Get("X-App") != "yes" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if err := <-f.errs; err != nil {
		t.Fatalf("ForwardHTTP: %v", err)
	}
	r := h.lastRequest()
	// The holder sees the visitor's address, not the front node's nor
	// what the visitor claimed.
	if r.RemoteAddr != resp.Request.RemoteAddr && !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
		t.Fatalf("holder saw RemoteAddr %q", r.RemoteAddr)
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Porthole-Link-") || k == "X-Forwarded-For" {
			t.Errorf("holder's request carries %s: %q", k, r.Header[k])
		}
	}
	if r.TLS != nil {
		t.Error("plain-HTTP visitor arrived with TLS state")
	}
	if from, ok := Forwarded(r); !ok || from != "node-a" {
		t.Errorf("Forwarded(r) = %q, %v", from, ok)
	}
	if h.hosts[0] != "app.example.test" {
		t.Errorf("host %q", h.hosts[0])
	}
}

// The visitor's real address: the holder must see the port of the
// visitor's own connection to the front node.
func TestForwardVisitorAddress(t *testing.T) {
	seen := make(chan string, 1)
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.RemoteAddr }))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	c, err := net.Dial("tcp", f.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-seen; got != c.LocalAddr().String() {
		t.Fatalf("holder saw %s, visitor is %s", got, c.LocalAddr())
	}
}

func TestForwardTLSVisitor(t *testing.T) {
	seen := make(chan *http.Request, 1)
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r }))
	_, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	fs := &front{errs: make(chan error, 10)}
	fs.Server = newTLSFront(d, addr)
	defer fs.Close()
	resp, err := fs.Client().Get(fs.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-seen
	if r.TLS == nil || r.TLS.Version == 0 {
		t.Fatalf("TLS visitor arrived without TLS state: %+v", r.TLS)
	}
}

// POST bodies stream both ways: each chunk comes back before the next
// is sent, so neither side buffers the whole body.
func TestForwardPostStreaming(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		buf := make([]byte, 4096)
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(bytes.ToUpper(buf[:n]))
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", f.URL, pr)
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := client(t).Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	pw.Write([]byte("chunk-0"))
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("CHUNK-%d", i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
			t.Fatalf("chunk %d: %q %v", i, got, err)
		}
		if i < 19 {
			fmt.Fprintf(pw, "chunk-%d", i+1)
		}
	}
	pw.Close()
	if rest, _ := io.ReadAll(resp.Body); len(rest) != 0 {
		t.Fatalf("extra bytes %q", rest)
	}
}

func TestForwardLargeBody(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	resp, err := client(t).Post(f.URL, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body)); string(got) != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

// Server-sent events arrive one by one: the holder sends the next event
// only after the visitor has read the previous one.
func TestForwardSSE(t *testing.T) {
	ack := make(chan struct{})
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "1000000") // must not make it wait for more
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-ack:
			case <-r.Context().Done():
				return
			}
		}
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	resp, err := client(t).Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 5; i++ {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		ack <- struct{}{}
	}
}

func TestForwardWebSocket(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
		}
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	ctx := t.Context()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.URL, "http"), &websocket.DialOptions{HTTPClient: client(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := 0; i < 10; i++ {
		msg := fmt.Sprintf("message %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("%q %v", got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestForwardTrailers(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		w.Write([]byte("body"))
		w.Header().Set("X-Checksum", "abc123;req="+r.Trailer.Get("X-Req-Trailer"))
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	req, _ := http.NewRequest("POST", f.URL, io.NopCloser(strings.NewReader("payload")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Req-Trailer": {"t1"}}
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "body" || resp.Trailer.Get("X-Checksum") != "abc123;req=t1" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
}

// A stale generation: the holder answers 421, ForwardHTTP returns
// ErrStale with nothing written, and the retry with the new generation
// carries the whole body.
func TestForwardStale(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	h.gen.Store(2)
	srv, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	f := startFront(t, d, addr, 1)

	// Without a refresh the front reports the stale answer itself.
	resp, err := client(t).Post(f.URL, "text/plain", strings.NewReader("first"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Test-Stale") != "1" {
		t.Fatalf("stale answer: %d %v", resp.StatusCode, resp.Header)
	}
	if err := <-f.errs; !errors.Is(err, ErrStale) {
		t.Fatalf("ForwardHTTP: %v, want ErrStale", err)
	}

	f.refresh = func() uint64 { return 2 }
	body := strings.Repeat("the whole body ", 10000)
	resp, err = client(t).Post(f.URL, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != body {
		t.Fatalf("retry: %d, %d bytes", resp.StatusCode, len(got))
	}
	// One stale answer per request: the second was retried.
	if st := srv.Stats(); st.StaleIn != 2 {
		t.Errorf("StaleIn = %d", st.StaleIn)
	}
	if st := d.Stats(); st.StaleOut != 2 {
		t.Errorf("StaleOut = %d", st.StaleOut)
	}
}

// An app's own 421 (or one with a forged stale header) reaches the
// visitor as it is: only the holder's answer, which echoes the request's
// nonce, counts as stale.
func TestForwardAppMisdirected(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Porthole-Link-Stale", "1")
		w.WriteHeader(http.StatusMisdirectedRequest)
		io.WriteString(w, "app says misdirected")
	}))
	_, addr := startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), addr, 1)
	resp, err := client(t).Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || string(body) != "app says misdirected" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("Porthole-Link-Stale") != "" {
		t.Error("link header leaked to the visitor")
	}
	if err := <-f.errs; err != nil {
		t.Fatalf("ForwardHTTP: %v", err)
	}
}

// A request that came over the link is never forwarded again.
func TestForwardOnce(t *testing.T) {
	d2 := newDialer(t, testSecret)
	var again error
	var holderAddr string
	h := newHolder(nil)
	h.http = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		again = d2.ForwardHTTP(w, r, holderAddr, "app.example.test", 1)
		io.WriteString(w, "served here")
	})
	_, holderAddr = startServer(t, testSecret, h, nil)
	f := startFront(t, newDialer(t, testSecret), holderAddr, 1)
	resp, err := client(t).Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(again, ErrForwardedTwice) || string(body) != "served here" {
		t.Fatalf("second forward: %v, body %q", again, body)
	}
	if n := len(h.hosts); n != 1 {
		t.Fatalf("holder served %d requests", n)
	}
}

// A holder that is not running: the visitor gets 502, ForwardHTTP an
// error.
func TestForwardPeerDown(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	d := newDialer(t, testSecret)
	f := startFront(t, d, addr, 1)
	resp, err := client(t).Get(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Porthole-Error") != "cluster_link_error" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if err := <-f.errs; err == nil || errors.Is(err, ErrStale) {
		t.Fatalf("ForwardHTTP: %v", err)
	}
}

// Many requests at once share one session per peer.
func TestForwardConcurrent(t *testing.T) {
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	srv, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	f := startFront(t, d, addr, 1)
	c := client(t)
	errc := make(chan error, 200)
	for i := 0; i < 200; i++ {
		go func() {
			resp, err := c.Get(fmt.Sprintf("%s/%d", f.URL, i))
			if err != nil {
				errc <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != fmt.Sprintf("/%d", i) {
				err = fmt.Errorf("got %q", b)
			}
			errc <- err
		}()
	}
	for i := 0; i < 200; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if st := srv.Stats(); st.Sessions != 1 || st.HTTPIn != 200 {
		t.Fatalf("server stats %+v", st)
	}
	_ = time.Second
}
