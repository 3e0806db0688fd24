package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// identityBin is the porthole binary TestMain builds once for the package.
var identityBin string

// idProc is a porthole process with its output captured.
type idProc struct {
	args           []string
	cmd            *exec.Cmd
	mu             sync.Mutex
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// idStart runs porthole with args; the process is stopped when t ends.
func idStart(t *testing.T, args ...string) *idProc {
	t.Helper()
	p := &idProc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(identityBin, args...)
	p.cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=")
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("porthole %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.out(), p.errOut())
		}
	})
	return p
}

func (p *idProc) out() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func (p *idProc) errOut() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *idProc) stop() {
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

// wait returns the first match of re in the stream (stdout or stderr)
// within timeout.
func (p *idProc) wait(t *testing.T, stream func() string, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(stream()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(stream()); m != nil {
				return m
			}
			t.Fatalf("porthole %s exited (%v) without printing %s\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), p.err, re, p.out(), p.errOut())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no match for %s within %s\nstdout:\n%s\nstderr:\n%s", re, timeout, p.out(), p.errOut())
		}
	}
}

// exit waits for the process to end by itself and returns its exit code.
func (p *idProc) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("porthole %s still running after %s\nstderr:\n%s", strings.Join(p.args, " "), timeout, p.errOut())
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

// idServer is a running `porthole server` with auth on.
type idServer struct {
	p                    *idProc
	dataDir, cfgFile     string
	httpAddr, tunnelAddr string
	tunnelURL            string
}

// startIDServer starts a server on loopback ports the kernel picks, with
// the given TOML config and extra flags.
func startIDServer(t *testing.T, dataDir, configTOML string, extra ...string) *idServer {
	t.Helper()
	s := &idServer{dataDir: dataDir, cfgFile: filepath.Join(t.TempDir(), "server.toml")}
	if err := os.WriteFile(s.cfgFile, []byte(configTOML), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--log-format", "json", "--config", s.cfgFile, "--data-dir", dataDir,
		"--domain", "tun.test", "--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--grace-period", "2s"}, extra...)
	s.p = idStart(t, args...)
	line := s.p.wait(t, s.p.errOut, regexp.MustCompile(`\{[^\n]*"msg":"server started"[^\n]*\}`), 20*time.Second)[0]
	var a struct {
		HTTP      string `json:"http"`
		Tunnel    string `json:"tunnel"`
		TunnelTLS bool   `json:"tunnel_tls"`
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		t.Fatalf("start line %q: %v", line, err)
	}
	s.httpAddr, s.tunnelAddr = a.HTTP, a.Tunnel
	s.tunnelURL = "ws://" + a.Tunnel
	if a.TunnelTLS {
		s.tunnelURL = "wss://" + a.Tunnel
	}
	return s
}

// admin runs `porthole admin ARGS` on the server's data and config and
// returns stdout, stderr and the exit code.
func (s *idServer) admin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(identityBin, append(append([]string{"admin"}, args...), "--data-dir", s.dataDir, "--config", s.cfgFile)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

// mustAdmin runs an admin command that must succeed and returns its last
// line of output.
func (s *idServer) mustAdmin(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.admin(t, args...)
	if code != 0 {
		t.Fatalf("porthole admin %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return lastLine(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// client starts `porthole http APP` against s with the given flags.
func (s *idServer) client(t *testing.T, appPort string, flags ...string) *idProc {
	t.Helper()
	args := append([]string{"http", appPort, "--server", s.tunnelURL, "--inspect-addr", "127.0.0.1:0"}, flags...)
	return idStart(t, args...)
}

var idForwarding = regexp.MustCompile(`(?m)^Forwarding ((https?|tcp)://[^ ]+)`)

// forwarding waits for the client's public URL.
func (p *idProc) forwarding(t *testing.T) string {
	t.Helper()
	return p.wait(t, p.out, idForwarding, 20*time.Second)[1]
}

// refused waits for a client to exit non-zero, without retrying, with a
// message matching re on stderr.
func (p *idProc) refused(t *testing.T, re string) {
	t.Helper()
	if code := p.exit(t, 15*time.Second); code == 0 {
		t.Fatalf("client exited 0; want a refusal matching %q\nstderr:\n%s", re, p.errOut())
	}
	if !regexp.MustCompile(re).MatchString(p.errOut()) {
		t.Fatalf("client stderr does not match %q:\n%s", re, p.errOut())
	}
}

// startIDApp serves "identity app" on loopback and returns its port.
func startIDApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "identity app")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// visit requests path on host through the server's public listener.
func (s *idServer) visit(t *testing.T, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+s.httpAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("visit %s: %v", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func hostOfURL(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Hostname()
}

// idDNS is an authoritative DNS server on loopback whose TXT records a
// test changes while it runs.
type idDNS struct {
	addr string
	mu   sync.Mutex
	txt  map[string]string // fqdn -> value
}

func startIDDNS(t *testing.T) *idDNS {
	t.Helper()
	d := &idDNS{txt: map[string]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		d.mu.Lock()
		v, ok := d.txt[strings.ToLower(q.Name)]
		d.mu.Unlock()
		switch {
		case ok && q.Qtype == dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0}, Txt: []string{v}})
		case !ok:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *idDNS) set(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if value == "" {
		delete(d.txt, dns.Fqdn(strings.ToLower(name)))
		return
	}
	d.txt[dns.Fqdn(strings.ToLower(name))] = value
}

// idCA is a test certificate authority.
type idCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var idSerial struct {
	sync.Mutex
	n int64
}

func idNextSerial() *big.Int {
	idSerial.Lock()
	defer idSerial.Unlock()
	idSerial.n++
	return big.NewInt(time.Now().UnixNano() + idSerial.n)
}

func newIDCA(t *testing.T, name string) *idCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: idNextSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &idCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate; ca nil means self-signed. It writes
// cert and key files into dir and returns their paths.
func issueIDCert(t *testing.T, ca *idCA, dir, cn string, server bool, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: idNextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost", "tun.test", "*.tun.test"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile = filepath.Join(dir, fmt.Sprintf("%s-%x.crt", cn, tmpl.SerialNumber))
	keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}
