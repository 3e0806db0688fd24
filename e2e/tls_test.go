package e2e

import (
	"crypto/x509"
	"encoding/hex"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/certs"
)

// TestTLSBinary drives the built binary: certificate reloads on a live
// server, and a client's verification of a wss:// server.
func TestTLSBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPorthole(t)
	t.Run("ReloadOnChange", func(t *testing.T) { testReload(t, bin, false) })
	t.Run("ReloadOnSIGHUP", func(t *testing.T) { testReload(t, bin, true) })
	t.Run("WSS", func(t *testing.T) { testWSS(t, bin) })
}

// testReload replaces the certificate files under a running server with a
// tunnel up: the next handshake gets the new certificate, connections
// made before keep working, and the tunnel is never dropped.
func testReload(t *testing.T, bin string, sighup bool) {
	dir := t.TempDir()
	ca := newTLSCA(t)
	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), ca.PEM)
	names := []string{"*.tun.test", "tun.test", "127.0.0.1"}
	a := issueTLSLeaf(t, ca, names...)
	certFile := writeFile(t, filepath.Join(dir, "cert.pem"), a.CertPEM)
	keyFile := writeFile(t, filepath.Join(dir, "key.pem"), a.KeyPEM)
	// With polling off, only SIGHUP can make the server notice.
	interval := "100ms"
	if sighup {
		interval = "-1s"
	}
	cfg := writeFile(t, filepath.Join(dir, "server.toml"), []byte("[tls]\nreload_interval = \""+interval+"\"\n"))

	srv, addrs := startTLSServer(t, bin, "--config", cfg, "--https-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	client := startPorthole(t, bin, "http", startLocalApp(t), "--server", "wss://"+addrs.Tunnel,
		"--ca-file", caFile, "--subdomain", "reload", "--inspect-addr", "off")
	url := waitForwarding(t, client)
	if !strings.HasPrefix(url, "https://reload.tun.test:") {
		t.Fatalf("first Forwarding URL %q: want the https one", url)
	}

	before := newVisitor(certPool(ca.PEM), addrs.HTTPS)
	status, body, proto := before.get(t, url)
	if status != 200 || !strings.Contains(body, "hello from the app (https)") {
		t.Fatalf("before reload: %d %q", status, body)
	}
	if proto != 2 {
		t.Errorf("visitor spoke HTTP/%d on the HTTPS listener; want HTTP/2", proto)
	}
	if got := before.lastCert().SerialNumber; got.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatalf("serving serial %v, want the first certificate's %v", got, a.Cert.SerialNumber)
	}

	// Replace the key first and the certificate second, as a careless
	// renewal script would: in between, the pair does not match, and the
	// server must keep serving the old one.
	b := issueTLSLeaf(t, ca, names...)
	writeAtomically(t, keyFile, b.KeyPEM)
	time.Sleep(300 * time.Millisecond)
	if got := handshakeCert(t, addrs.HTTPS, "reload.tun.test"); got.SerialNumber.Cmp(a.Cert.SerialNumber) != 0 {
		t.Fatalf("with a mismatched key on disk the server switched to serial %v", got.SerialNumber)
	}
	writeAtomically(t, certFile, b.CertPEM)
	if sighup {
		time.Sleep(300 * time.Millisecond)
		if got := handshakeCert(t, addrs.HTTPS, "reload.tun.test"); got.SerialNumber.Cmp(a.Cert.SerialNumber) != 0 {
			t.Fatal("the server reloaded without SIGHUP although polling is off")
		}
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitServing(t, addrs.HTTPS, "reload.tun.test", b.Cert)
	waitServing(t, addrs.Tunnel, "", b.Cert)

	// A new visitor connection verifies the new certificate; the old
	// connection, made with the old one, still works.
	after := newVisitor(certPool(ca.PEM), addrs.HTTPS)
	if status, body, _ := after.get(t, url); status != 200 || !strings.Contains(body, "hello from the app") {
		t.Fatalf("after reload: %d %q", status, body)
	}
	if got := after.lastCert().SerialNumber; got.Cmp(b.Cert.SerialNumber) != 0 {
		t.Fatalf("new connection got serial %v, want the new certificate's %v", got, b.Cert.SerialNumber)
	}
	if status, _, _ := before.get(t, url); status != 200 {
		t.Fatalf("connection from before the reload: status %d", status)
	}
	if s := client.stderr.String(); strings.Contains(s, "disconnected") || strings.Contains(s, "reconnecting") {
		t.Fatalf("the tunnel was dropped during the reload:\n%s", s)
	}
	// Polling saw the mismatched pair and kept the old certificate, then
	// saw the complete one.
	if s := srv.stderr.String(); !strings.Contains(s, "certificate reloaded") || (!sighup && !strings.Contains(s, "certificate reload failed")) {
		t.Errorf("server log lacks the reloads:\n%s", s)
	}
}

// waitServing waits until a handshake with addr gets want.
func waitServing(t *testing.T, addr, sni string, want *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := handshakeCert(t, addr, sni)
		if got.SerialNumber.Cmp(want.SerialNumber) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves serial %v, want %v", addr, got.SerialNumber, want.SerialNumber)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testWSS checks how a client verifies a server with a self-signed
// certificate: trusted through --ca-file, or through --server-pin; a
// wrong pin, or neither, is a final error that says what to do.
func testWSS(t *testing.T, bin string) {
	dir := t.TempDir()
	self := issueTLSLeaf(t, nil, "tun.test", "127.0.0.1")
	certFile := writeFile(t, filepath.Join(dir, "cert.pem"), self.CertPEM)
	keyFile := writeFile(t, filepath.Join(dir, "key.pem"), self.KeyPEM)
	_, addrs := startTLSServer(t, bin, "--tls-cert", certFile, "--tls-key", keyFile)
	server := "wss://" + addrs.Tunnel
	app := startLocalApp(t)
	pin := certs.SPKIPin(self.Cert)
	other := issueTLSLeaf(t, nil, "tun.test")
	otherDigest := certs.SPKIDigest(other.Cert)

	connects := func(t *testing.T, args ...string) {
		c := startPorthole(t, bin, append([]string{"http", app, "--server", server, "--inspect-addr", "off"}, args...)...)
		url := waitForwarding(t, c)
		v := newVisitor(nil, addrs.HTTP)
		if status, body, _ := v.get(t, url); status != 200 || !strings.Contains(body, "hello from the app (http)") {
			t.Fatalf("GET %s: %d %q", url, status, body)
		}
	}
	fails := func(t *testing.T, wants []string, args ...string) {
		c := startPorthole(t, bin, append([]string{"http", app, "--server", server, "--inspect-addr", "off"}, args...)...)
		// Final: no retry, so the exit comes at once.
		if code := c.exitCode(t, 10*time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		stderr := c.stderr.String()
		for _, w := range wants {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if strings.Contains(stderr, "reconnecting") {
			t.Errorf("client retried a certificate failure:\n%s", stderr)
		}
	}

	t.Run("CAFile", func(t *testing.T) {
		connects(t, "--ca-file", writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), self.CertPEM))
	})
	t.Run("Pin", func(t *testing.T) { connects(t, "--server-pin", pin) })
	t.Run("WrongPin", func(t *testing.T) {
		fails(t, []string{"does not match --server-pin", pin}, "--server-pin", "sha256:"+hex.EncodeToString(otherDigest[:]))
	})
	t.Run("NeitherCANorPin", func(t *testing.T) {
		fails(t, []string{"not signed by a CA this machine trusts", "--ca-file", "--server-pin " + pin})
	})
}
