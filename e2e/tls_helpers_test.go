package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsCA is a throwaway certificate authority for tests.
type tlsCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

var tlsSerial = struct {
	sync.Mutex
	n int64
}{n: time.Now().UnixNano()}

func tlsNextSerial() *big.Int {
	tlsSerial.Lock()
	defer tlsSerial.Unlock()
	tlsSerial.n++
	return big.NewInt(tlsSerial.n)
}

func newTLSCA(t *testing.T) *tlsCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          tlsNextSerial(),
		Subject:               pkix.Name{CommonName: "porthole test CA"},
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
	return &tlsCA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// tlsLeaf is a certificate and key in PEM, with its parsed form.
type tlsLeaf struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// issueTLSLeaf makes a server certificate for names (DNS names or IP addresses)
// signed by ca, or self-signed when ca is nil.
func issueTLSLeaf(t *testing.T, ca *tlsCA, names ...string) *tlsLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: tlsNextSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
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

// tlsBuildPorthole builds the binary into a directory that lives as long as
// t (the TLS tests run as subtests of the one that built it).
func tlsBuildPorthole(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "porthole")
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", exe, "../cmd/porthole").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// tlsProc is a running porthole process with its output captured.
type tlsProc struct {
	cmd    *exec.Cmd
	stdout *tlsLineBuf
	stderr *tlsLineBuf
	done   chan struct{}
	err    error
}

// tlsLineBuf collects output and lets a test wait for a line.
type tlsLineBuf struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	cond  *sync.Cond
}

func newTLSLineBuf() *tlsLineBuf {
	b := &tlsLineBuf{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *tlsLineBuf) feed(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.mu.Lock()
		b.buf.WriteString(sc.Text() + "\n")
		b.lines = append(b.lines, sc.Text())
		b.cond.Broadcast()
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.lines = append(b.lines, "\x00EOF")
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *tlsLineBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// wait returns the first line matching re, or fails after timeout.
func (b *tlsLineBuf) wait(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.lines = append(b.lines, "\x00TIMEOUT")
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer deadline.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := 0; ; i++ {
		for i >= len(b.lines) {
			b.cond.Wait()
		}
		switch l := b.lines[i]; {
		case l == "\x00EOF" || l == "\x00TIMEOUT":
			b.lines = append(b.lines[:i], b.lines[i+1:]...)
			t.Fatalf("no line matching %s within %s (%s); output:\n%s", re, timeout, strings.Trim(l, "\x00"), b.buf.String())
		case re.MatchString(l):
			return l
		}
	}
}

func tlsStartPorthole(t *testing.T, bin string, args ...string) *tlsProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=")
	p := &tlsProc{cmd: cmd, stdout: newTLSLineBuf(), stderr: newTLSLineBuf(), done: make(chan struct{})}
	so, _ := cmd.StdoutPipe()
	se, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.stdout.feed(so) }()
	go func() { defer wg.Done(); p.stderr.feed(se) }()
	go func() {
		wg.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("porthole %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// stop interrupts the process and waits for it.
func (p *tlsProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exitCode waits for the process to exit by itself and returns its code.
func (p *tlsProc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("process still running after %s; stderr:\n%s", timeout, p.stderr)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return -1
}

// tlsServerAddrs are the listener addresses a server logged at start.
type tlsServerAddrs struct {
	HTTP, HTTPS, Tunnel, Admin string
}

// startTLSServer runs `porthole server` on loopback ports chosen by the
// kernel and returns its addresses, read from the JSON start line.
func startTLSServer(t *testing.T, bin string, args ...string) (*tlsProc, tlsServerAddrs) {
	t.Helper()
	base := []string{"server", "--log-format", "json", "--no-auth", "--domain", "tun.test",
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--data-dir", t.TempDir()}
	p := tlsStartPorthole(t, bin, append(base, args...)...)
	line := p.stderr.wait(t, regexp.MustCompile(`"msg":"server started"`), 15*time.Second)
	var a struct {
		HTTP   string `json:"http"`
		HTTPS  string `json:"https"`
		Tunnel string `json:"tunnel"`
		Admin  string `json:"admin"`
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		t.Fatalf("start line %q: %v", line, err)
	}
	return p, tlsServerAddrs{HTTP: a.HTTP, HTTPS: a.HTTPS, Tunnel: a.Tunnel, Admin: a.Admin}
}

var tlsForwardingRE = regexp.MustCompile(`^Forwarding ((https?|tcp)://[^ ]+)`)

// tlsWaitForwarding returns the public URL from the client's first
// Forwarding line.
func tlsWaitForwarding(t *testing.T, p *tlsProc) string {
	t.Helper()
	line := p.stdout.wait(t, tlsForwardingRE, 20*time.Second)
	return tlsForwardingRE.FindStringSubmatch(line)[1]
}

// tlsStartApp serves "hello from the app" on loopback.
func tlsStartApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app (%s)\n", r.Header.Get("X-Forwarded-Proto"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
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
