package e2e

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startIDServer starts a server with auth on, on loopback ports the
// kernel picks, with the given TOML config and extra flags.
func startIDServer(t *testing.T, dataDir, configTOML string, extra ...string) *serverProc {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "server.toml")
	if err := os.WriteFile(cfgFile, []byte(configTOML), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, 20*time.Second, append([]string{"--config", cfgFile, "--data-dir", dataDir,
		"--domain", "tun.test", "--grace-period", "2s"}, extra...)...)
	s.dataDir, s.cfgFile = dataDir, cfgFile
	return s
}

// visit requests path on host through the server's public listener.
func (s *serverProc) visit(t *testing.T, host string) (int, string) {
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

// issueIDCert makes a leaf certificate for cn, a server's (for
// 127.0.0.1 and tun.test) or a client's; ca nil means self-signed. It
// writes cert and key files into dir and returns their paths.
func issueIDCert(t *testing.T, ca *testCA, dir, cn string, server bool, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
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
	leaf := signLeaf(t, ca, tmpl)
	certFile = filepath.Join(dir, fmt.Sprintf("%s-%x.crt", cn, tmpl.SerialNumber))
	keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
	os.WriteFile(certFile, leaf.CertPEM, 0o600)
	os.WriteFile(keyFile, leaf.KeyPEM, 0o600)
	return certFile, keyFile
}

func readLeaf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
