package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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
