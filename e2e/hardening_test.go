package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestStalledReadersMemoryBounded: 100 visitors start a 1 GiB download
// each and stop reading. The server holds what the tunnel pushed into
// their streams within its buffer budget, not a full window per stream,
// and another tunnel keeps serving meanwhile. Without a config file: the
// defaults are what protects it.
func TestStalledReadersMemoryBounded(t *testing.T) {
	s := startCoreServer(t)
	bigURL := s.client(t, endlessApp(t, 1<<30), "--subdomain", "big").forwarding(t)
	normalURL := s.client(t, nameApp(t, "normal"), "--subdomain", "normal").forwarding(t)
	s.waitBody(t, normalURL, "normal", 10*time.Second)
	_, base := s.settledBaseline(t)

	for range 100 {
		stalledVisitor(t, s.httpAddr, bigURL)
	}
	peak, served := base, 0
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
		peak = max(peak, s.rss(t))
		status, body, err := s.get(t, normalURL)
		if err != nil || status != 200 || body != "normal" {
			t.Fatalf("the other tunnel during the stall: %d %q %v", status, body, err)
		}
		served++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("server RSS %d MiB before, peak %d MiB with 100 stalled readers; %d requests served meanwhile", base>>20, peak>>20, served)
	if growth := peak - base; growth > 200<<20 {
		t.Fatalf("server RSS grew by %d MiB with 100 stalled readers, want under 200 MiB", growth>>20)
	}
	buffered := s.metric(t, "porthole_buffered_bytes")
	budget := s.metric(t, "porthole_buffer_budget_bytes")
	t.Logf("%.0f MiB buffered of a %.0f MiB budget", buffered/(1<<20), budget/(1<<20))
	if buffered > budget {
		t.Fatalf("%.0f bytes buffered, over the %.0f budget", buffered, budget)
	}
}

// TestWriteTimeoutCutsStalledReader: a visitor that reads nothing for the
// write timeout is cut off; one that reads slowly, but reads, is not.
func TestWriteTimeoutCutsStalledReader(t *testing.T) {
	s := startCoreServer(t, "--write-timeout", "2s")
	url := s.client(t, endlessApp(t, 1<<30), "--subdomain", "big").forwarding(t)
	stalledVisitor(t, s.httpAddr, url)
	slow := stalledVisitor(t, s.httpAddr, url)
	if n := s.metric(t, "porthole_visitor_connections"); n != 2 {
		t.Fatalf("%v visitor connections, want 2", n)
	}

	// The slow reader takes 16 KiB every 300 ms, far less than the
	// megabytes its socket buffers hold, for three write timeouts.
	buf := make([]byte, 16<<10)
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		slow.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := slow.Read(buf); err != nil {
			t.Fatalf("the slow reader: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The server has let go of the stalled reader, and only of it.
	if n := s.metric(t, "porthole_visitor_connections"); n != 1 {
		t.Fatalf("%v visitor connections after the write timeout, want 1 (the slow reader)", n)
	}
	if hits := s.limitHits(t, "visitor_write_timeout"); hits != 1 {
		t.Fatalf("visitor_write_timeout hits %v, want 1", hits)
	}
	if n := strings.Count(s.errOut(), "aborted=true"); n != 1 {
		t.Fatalf("%d aborted requests in the access log, want 1:\n%s", n, s.errOut())
	}
}

// TestFrameFloodsCutOff: a client speaks raw multiplexer frames in a
// loop, of each kind a session takes; the server cuts it off, counts it
// in metrics, stays within 100 goroutines and 20 MiB of where it was,
// and another client's tunnel keeps serving.
func TestFrameFloodsCutOff(t *testing.T) {
	s := startCoreServer(t)
	url := s.client(t, nameApp(t, "normal"), "--subdomain", "normal").forwarding(t)
	s.waitBody(t, url, "normal", 10*time.Second)

	open1 := muxFrame(frameWindowUpdate, flagSYN, 1, 0) // the control stream
	cases := []struct {
		name   string
		prefix []byte
		frame  func(i uint32) []byte
	}{
		{name: "pings", frame: func(uint32) []byte { return muxFrame(framePing, flagSYN, 0, 1) }},
		{name: "window updates", prefix: open1, frame: func(uint32) []byte { return muxFrame(frameWindowUpdate, 0, 1, 1) }},
		{name: "data for unknown streams", prefix: open1, frame: func(uint32) []byte {
			return append(muxFrame(frameData, 0, 1001, 1), 'x')
		}},
		// Beside an idle control stream: garbage on the control stream
		// itself ends the session for another reason.
		{name: "stream opens with data", prefix: open1, frame: func(i uint32) []byte {
			return append(muxFrame(frameData, flagSYN, 2*i+3, 64<<10), make([]byte, 64<<10)...)
		}},
		{name: "go-aways", prefix: open1, frame: func(uint32) []byte { return muxFrame(frameGoAway, 0, 0, 0) }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g0, rss0 := s.settledBaseline(t)
			from := fmt.Sprintf("127.0.0.%d", 10+i)
			conn := rawSession(t, s, from)
			done := make(chan error, 1)
			go func() {
				if c.prefix != nil {
					conn.Write(c.prefix)
				}
				var batch []byte
				for i := uint32(0); ; i++ {
					batch = append(batch, c.frame(i)...)
					if len(batch) < 64<<10 {
						continue
					}
					conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := conn.Write(batch); err != nil {
						done <- err
						return
					}
					batch = batch[:0]
				}
			}()
			peakG, peakRSS := g0, rss0
			var werr error
		wait:
			for end := time.After(15 * time.Second); ; {
				select {
				case werr = <-done:
					break wait
				case <-end:
					t.Fatal("the flooding client is still connected after 15 s")
				case <-time.After(50 * time.Millisecond):
					peakG = max(peakG, s.goroutines(t))
					peakRSS = max(peakRSS, s.rss(t))
				}
			}
			t.Logf("goroutines %d -> peak %d, RSS %d -> peak %d MiB; cut off with %v", g0, peakG, rss0>>20, peakRSS>>20, werr)
			if peakG > g0+100 {
				t.Fatalf("goroutines went from %d to %d during the flood", g0, peakG)
			}
			if peakRSS > rss0+20<<20 {
				t.Fatalf("RSS went from %d to %d MiB during the flood", rss0>>20, peakRSS>>20)
			}
			var ne net.Error
			if errors.As(werr, &ne) && ne.Timeout() {
				t.Fatalf("the server stopped reading but did not cut the client off: %v", werr)
			}
			s.waitBody(t, url, "normal", 5*time.Second)
			if hits := s.limitHits(t, "client_frames"); hits != float64(i+1) {
				t.Fatalf("client_frames hits %v, want %d", hits, i+1)
			}
			// The flooder's address may not come straight back.
			ws, resp, err := dialRaw(s, from)
			if err == nil {
				ws.CloseNow()
				t.Fatal("a new handshake from the flooding address was accepted at once")
			}
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("a new handshake from the flooding address: %v (%v), want 429", err, resp)
			}
		})
	}
}

// TestVisitorConnectionCaps: connections past the per-address cap get
// 429, past the server-wide cap 503, each naming its limit.
func TestVisitorConnectionCaps(t *testing.T) {
	cfg := writeCoreFile(t, "server.toml", "[limits]\nvisitor_connections_per_ip = 5\nmax_visitor_connections = 8\n")
	s := startCoreServer(t, "--config", cfg)
	url := s.client(t, nameApp(t, "capped"), "--subdomain", "capped").forwarding(t)
	host := hostOfURL(t, url)
	ips := limLoopbackIPs(s.httpAddr, 3)
	if len(ips) < 3 {
		t.Skip("needs several loopback source addresses (Linux routes 127/8 to loopback)")
	}
	hold := func(ip string, n int) {
		for range n {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			c, err := d.Dial("tcp", s.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	conns := func(n float64) func() bool {
		return func() bool { return s.metric(t, "porthole_visitor_connections") == n }
	}
	waitFor(t, "the address probes to be let go", 5*time.Second, conns(0))
	hold(ips[0], 5)
	waitFor(t, "the held connections to count", 5*time.Second, conns(5))
	resp, err := rawGet(t, s.httpAddr, host, ips[0])
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("X-Porthole-Error") != "visitor_connections_per_ip" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth connection from one address: %v %v", statusOrNil(resp), err)
	}
	hold(ips[1], 3) // 8 in all
	waitFor(t, "the held connections to count", 5*time.Second, conns(8))
	resp, err = rawGet(t, s.httpAddr, host, ips[2])
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("X-Porthole-Error") != "visitor_connections" {
		t.Fatalf("ninth connection to the server: %v %v", statusOrNil(resp), err)
	}
}

// TestDefaultVisitorCapPerAddress: without a config file, one address
// cannot open more than 256 connections.
func TestDefaultVisitorCapPerAddress(t *testing.T) {
	s := startCoreServer(t)
	url := s.client(t, nameApp(t, "capped"), "--subdomain", "capped").forwarding(t)
	for range 256 {
		c, err := net.Dial("tcp", s.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	waitFor(t, "the 257th connection to be refused", 5*time.Second, func() bool {
		resp, err := rawGet(t, s.httpAddr, hostOfURL(t, url), "")
		return err == nil && resp.StatusCode == http.StatusTooManyRequests &&
			resp.Header.Get("X-Porthole-Error") == "visitor_connections_per_ip"
	})
}

// TestHTTP2StreamsCounted: one HTTP/2 connection cannot carry more
// requests than its address may have connections, and the server
// advertises its stream limit.
func TestHTTP2StreamsCounted(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "porthole test CA")
	leaf := issueTLSLeaf(t, ca, "*.tun.test", "tun.test", "127.0.0.1")
	certFile := tlsWriteFile(t, filepath.Join(dir, "cert.pem"), leaf.CertPEM)
	keyFile := tlsWriteFile(t, filepath.Join(dir, "key.pem"), leaf.KeyPEM)
	caFile := tlsWriteFile(t, filepath.Join(dir, "ca.pem"), ca.PEM)
	cfg := tlsWriteFile(t, filepath.Join(dir, "server.toml"), []byte("[limits]\nvisitor_connections_per_ip = 20\n"))
	srv := startTLSServer(t, "--config", cfg, "--https-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)

	release := make(chan struct{})
	var inApp, maxInApp atomic.Int64
	app := serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inApp.Add(1)
		defer inApp.Add(-1)
		for m := maxInApp.Load(); n > m && !maxInApp.CompareAndSwap(m, n); m = maxInApp.Load() {
		}
		<-release
		io.WriteString(w, "ok")
	})})
	client := startPorthole(t, interrupted, "http", portOf(app), "--server", "wss://"+srv.tunnelAddr,
		"--ca-file", caFile, "--subdomain", "h2", "--inspect-addr", "off")
	url := client.forwarding(t)

	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: tlsCertPool(ca.PEM)},
		DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			d := tls.Dialer{Config: cfg}
			return d.DialContext(ctx, network, srv.httpsAddr)
		},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var ok, refused, other atomic.Int64
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(url)
			if err != nil {
				other.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200 && resp.ProtoMajor == 2:
				ok.Add(1)
			case resp.StatusCode == 429 && resp.Header.Get("X-Porthole-Error") == "visitor_connections_per_ip":
				refused.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	waitFor(t, "the requests to arrive or be refused", 20*time.Second, func() bool {
		return inApp.Load()+refused.Load()+other.Load() >= 60 || refused.Load() >= 60-19
	})
	close(release)
	wg.Wait()
	t.Logf("60 concurrent HTTP/2 requests: %d answered, %d refused (429), %d otherwise; at most %d at the app at once",
		ok.Load(), refused.Load(), other.Load(), maxInApp.Load())
	if maxInApp.Load() > 19 {
		t.Fatalf("%d requests of one connection reached the app at once; the address may have 20 connections, one of them the HTTP/2 connection itself", maxInApp.Load())
	}
	if refused.Load() == 0 || other.Load() != 0 {
		t.Fatalf("want the excess refused with 429: %d refused, %d other", refused.Load(), other.Load())
	}
	if got := advertisedStreams(t, srv.httpsAddr, ca.PEM); got != 100 {
		t.Fatalf("server advertises %d concurrent streams per connection, want 100", got)
	}
}

// advertisedStreams reads SETTINGS_MAX_CONCURRENT_STREAMS from the
// server's first SETTINGS frame.
func advertisedStreams(t *testing.T, addr string, caPEM []byte) uint32 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: tlsCertPool(caPEM), ServerName: "x.tun.test", NextProtos: []string{"h2"}})
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
			v, _ := sf.Value(http2.SettingMaxConcurrentStreams)
			return v
		}
	}
}

func statusOrNil(resp *http.Response) any {
	if resp == nil {
		return nil
	}
	return strings.TrimSpace(resp.Status + " " + resp.Header.Get("X-Porthole-Error"))
}
