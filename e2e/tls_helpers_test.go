package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

var certSerial = struct {
	sync.Mutex
	n int64
}{n: time.Now().UnixNano()}

func nextSerial() *big.Int {
	certSerial.Lock()
	defer certSerial.Unlock()
	certSerial.n++
	return big.NewInt(certSerial.n)
}

// newTestCA makes a CA named name, valid from an hour ago for a day.
func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// tlsLeaf is a certificate and key in PEM, with its parsed form.
type tlsLeaf struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// signLeaf makes a new key and a certificate for it from tmpl (given a
// serial number here), signed by ca, or self-signed when ca is nil.
func signLeaf(t *testing.T, ca *testCA, tmpl *x509.Certificate) *tlsLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = nextSerial()
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &tlsLeaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		Cert:    cert,
	}
}

// issueTLSLeaf makes a server certificate for names (DNS names or IP addresses)
// signed by ca, or self-signed when ca is nil.
func issueTLSLeaf(t *testing.T, ca *testCA, names ...string) *tlsLeaf {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return signLeaf(t, ca, tmpl)
}

// tlsWriteAtomically replaces path the way renewal tools do: write beside
// it, then rename over it.
func tlsWriteAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tlsWriteFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func tlsCertPool(pems ...[]byte) *x509.CertPool {
	p := x509.NewCertPool()
	for _, b := range pems {
		p.AppendCertsFromPEM(b)
	}
	return p
}

// startTLSServer runs `porthole server --no-auth` for tun.test on
// loopback ports chosen by the kernel, with args.
func startTLSServer(t *testing.T, args ...string) *serverProc {
	t.Helper()
	return startServer(t, 15*time.Second, append([]string{"--no-auth", "--domain", "tun.test", "--data-dir", t.TempDir()}, args...)...)
}

// tlsStartApp serves "hello from the app" on loopback.
func tlsStartApp(t *testing.T) string {
	t.Helper()
	return serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app (%s)\n", r.Header.Get("X-Forwarded-Proto"))
	}), ReadHeaderTimeout: 5 * time.Second})
}

// tlsVisitor is an HTTPS client that reaches every name at addr (a test has
// no DNS for its names) and records the certificates it was shown.
type tlsVisitor struct {
	*http.Client
	mu    sync.Mutex
	seen  []*x509.Certificate
	tr    *http.Transport
	proto string
}

func newTLSVisitor(roots *x509.CertPool, addr string) *tlsVisitor {
	v := &tlsVisitor{}
	d := &net.Dialer{Timeout: 5 * time.Second}
	v.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{
			RootCAs: roots,
			VerifyConnection: func(cs tls.ConnectionState) error {
				v.mu.Lock()
				v.seen = append(v.seen, cs.PeerCertificates[0])
				v.mu.Unlock()
				return nil
			},
		},
		ForceAttemptHTTP2: true,
	}
	v.Client = &http.Client{Transport: v.tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return v
}

// lastCert is the certificate of the most recent handshake.
func (v *tlsVisitor) lastCert() *x509.Certificate {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.seen) == 0 {
		return nil
	}
	return v.seen[len(v.seen)-1]
}

// get fetches url and returns the status, body and HTTP major version.
func (v *tlsVisitor) get(t *testing.T, url string) (int, string, int) {
	t.Helper()
	resp, err := v.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.ProtoMajor
}

// tlsHandshakeCert dials addr with SNI name and returns the certificate the
// server presents, without verifying it.
func tlsHandshakeCert(t *testing.T, addr, name string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // the test inspects what it is shown
	if err != nil {
		t.Fatalf("handshake with %s (SNI %s): %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}
