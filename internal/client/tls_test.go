package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/certs"
)

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// dialPipe handshakes a client built from cfg against a server holding
// cert and returns the client's error.
func dialPipe(t *testing.T, cfg *Config, cert tls.Certificate) error {
	t.Helper()
	tc, err := cfg.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	tc.ServerName = "tunnel.example.test"
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
		s.Handshake()
		s.Close()
	}()
	c := tls.Client(a, tc)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.Handshake()
}

func TestServerPin(t *testing.T) {
	cert := selfSigned(t, "tunnel.example.test")
	other := selfSigned(t, "tunnel.example.test")
	digest := certs.SPKIDigest(cert.Leaf)

	ok := &Config{ServerPins: []string{certs.SPKIPin(other.Leaf), fmt.Sprintf("sha256:%x", digest)}}
	if err := dialPipe(t, ok, cert); err != nil {
		t.Fatalf("matching pin (hex, second of two): %v", err)
	}

	wrong := &Config{ServerPins: []string{certs.SPKIPin(other.Leaf)}}
	err := dialPipe(t, wrong, cert)
	var pe *PinMismatchError
	if !errors.As(err, &pe) || pe.Got != certs.SPKIPin(cert.Leaf) {
		t.Fatalf("wrong pin: %v, want a PinMismatchError naming the presented key", err)
	}
	if !isFinalTLSError(err) {
		t.Error("a pin mismatch is not final")
	}
	if msg := explainTLSError("wss://x", err).Error(); !strings.Contains(msg, "does not match --server-pin") || !strings.Contains(msg, pe.Got) {
		t.Errorf("message %q", msg)
	}

	if _, err := (&Config{ServerPins: []string{"md5:abc"}}).TLSConfig(); err == nil || !strings.Contains(err.Error(), "--server-pin") {
		t.Errorf("bad pin: %v", err)
	}
	if _, err := (&Config{ServerPins: []string{certs.SPKIPin(cert.Leaf)}, InsecureSkipVerify: true}).TLSConfig(); err == nil {
		t.Error("--server-pin with --insecure-skip-verify was accepted")
	}
}

func TestUntrustedServerNamesTheFix(t *testing.T) {
	cert := selfSigned(t, "tunnel.example.test")
	err := dialPipe(t, &Config{}, cert)
	if !isFinalTLSError(err) {
		t.Fatalf("untrusted certificate: %v is not final", err)
	}
	msg := explainTLSError("wss://tunnel.example.test", err).Error()
	for _, want := range []string{"--ca-file", "--server-pin " + certs.SPKIPin(cert.Leaf), "not signed by a CA"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(explainTLSError("wss://x", err), &ua) {
		t.Error("the explanation no longer wraps the x509 error")
	}
}
