package e2e

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCompress: tunnel compression with the built binary. A client that
// asks with --compress gets a compressed session from a server that allows
// it (the bytes on the wire shrink for text, for tcp and http tunnels); a
// server with compression off refuses, and the session runs uncompressed
// with a log line; a client that does not ask is not compressed.
func TestCompress(t *testing.T) {
	data := compressJSON(4 << 20)
	payload := int64(2 * len(data)) // an echo: both ways
	echo := startTCPApp(t, tcpEcho)

	t.Run("Allowed", func(t *testing.T) {
		srv := startTCPServer(t)
		relay := startCompressRelay(t, srv.tunnelAddr)
		tun := startTCPTunnel(t, srv.serverProc, echo.port(), "--compress", "--server", relay.wsURL())
		if !eventually(func() bool { return strings.Contains(tun.errOut(), "session compressed") }) {
			t.Errorf("the client did not log its compressed session:\n%s", tun.errOut())
		}
		wire := compressEchoRoundTrip(t, relay, tun.public, data)
		if wire > payload/3 {
			t.Errorf("compressed tcp tunnel: %d bytes on the wire for %d of JSON (%.2f)", wire, payload, float64(wire)/float64(payload))
		}
		t.Logf("tcp, JSON: %d bytes on the wire for %d (%.2f)", wire, payload, float64(wire)/float64(payload))

		// An HTTP tunnel on a compressed session: a JSON download.
		app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(data)
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go app.Serve(ln)
		t.Cleanup(func() { app.Close() })
		httpRelay := startCompressRelay(t, srv.tunnelAddr)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		cl := startPorthole(t, killed, "http", port, "--compress", "--server", httpRelay.wsURL(), "--inspect-addr", "off")
		url := cl.forwardingURLs(t, 1)[0]
		before := httpRelay.bytes()
		status, body, err := srv.get(t, url+"/data.json")
		if err != nil || status != 200 || body != string(data) {
			t.Fatalf("GET through the compressed http tunnel: %d, %d bytes, %v", status, len(body), err)
		}
		wire = httpRelay.bytes() - before
		if wire > int64(len(data))/3 {
			t.Errorf("compressed http tunnel: %d bytes on the wire for a %d-byte body", wire, len(data))
		}
	})

	t.Run("RefusedByServer", func(t *testing.T) {
		conf := writeCoreFile(t, "server.toml", "[tunnel]\ncompression = \"off\"\n")
		srv := startTCPServer(t, "--config", conf)
		relay := startCompressRelay(t, srv.tunnelAddr)
		tun := startTCPTunnel(t, srv.serverProc, echo.port(), "--compress", "--server", relay.wsURL())
		if !eventually(func() bool { return strings.Contains(tun.errOut(), "compression refused by the server") }) {
			t.Errorf("the client did not log the refusal:\n%s", tun.errOut())
		}
		if wire := compressEchoRoundTrip(t, relay, tun.public, data); wire < payload {
			t.Errorf("refused compression, yet %d bytes on the wire for %d", wire, payload)
		}
		select {
		case <-tun.done:
			t.Fatalf("the client exited: %v", tun.err)
		default:
		}
	})

	t.Run("NotAsked", func(t *testing.T) {
		srv := startTCPServer(t)
		relay := startCompressRelay(t, srv.tunnelAddr)
		tun := startTCPTunnel(t, srv.serverProc, echo.port(), "--server", relay.wsURL())
		if wire := compressEchoRoundTrip(t, relay, tun.public, data); wire < payload {
			t.Errorf("compression is off by default, yet %d bytes on the wire for %d", wire, payload)
		}
		if strings.Contains(tun.errOut(), "compress") {
			t.Errorf("a client that did not ask logged about compression:\n%s", tun.errOut())
		}
	})

	t.Run("ConfigFile", func(t *testing.T) {
		// compress = true in the client's file, for `porthole start`.
		srv := startTCPServer(t)
		relay := startCompressRelay(t, srv.tunnelAddr)
		conf := writeCoreFile(t, "porthole.toml", fmt.Sprintf("compress = true\n\n[tunnels.echo]\nproto = \"tcp\"\naddr = %q\n", echo.port()))
		cl := startPorthole(t, killed, "start", "--config", conf, "--server", relay.wsURL(), "--inspect-addr", "off")
		public := tcpPublicAddr(t, cl.forwardingURLs(t, 1)[0])
		if wire := compressEchoRoundTrip(t, relay, public, data); wire > payload/3 {
			t.Errorf("compress = true: %d bytes on the wire for %d", wire, payload)
		}
		// Already-compressed data crosses intact and costs about its own
		// size: the compressor sends what it cannot shrink as is.
		random := make([]byte, 2<<20)
		mrand.NewChaCha8([32]byte{9}).Read(random)
		wire := compressEchoRoundTrip(t, relay, public, random)
		if n := int64(2 * len(random)); wire > n+n/20 {
			t.Errorf("compressed session, random data: %d bytes on the wire for %d", wire, n)
		}
	})
}

// eventually polls cond for a few seconds: log lines reach stderr within
// the logger's flush interval, not at once.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
