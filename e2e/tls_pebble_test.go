package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// tlsPebbleBinary finds Pebble, the ACME test server: $PEBBLE, then PATH,
// then GOPATH/bin (where `go install` puts it). Without it the ACME test
// skips, except in CI, where a missing Pebble is a broken set-up.
func tlsPebbleBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PEBBLE"); p != "" {
		return p
	}
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(string(tlsTrimNL(out))) {
			p := filepath.Join(dir, "bin", "pebble")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	msg := "pebble not found: set PEBBLE to its path (bash .ci/pebble.sh installs it and prints the variable)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func tlsTrimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// tlsPebbleCA is a running Pebble.
type tlsPebbleCA struct {
	Directory string // ACME directory URL
	// ListenerCertFile is the PEM certificate Pebble's own HTTPS
	// endpoints use: what the ACME client must trust to talk to it.
	ListenerCertFile string
	// Root is the PEM root Pebble signs certificates with, fetched from
	// its management endpoint.
	Root []byte
}

// tlsStartPebble runs Pebble on loopback ports. It validates HTTP-01 on
// httpPort and TLS-ALPN-01 on tlsPort of 127.0.0.1 (where dnsAddr resolves
// every name), and looks DNS-01 records up at dnsAddr. Its certificates
// are valid for validity (Pebble's default, 90 days, when zero).
func tlsStartPebble(t *testing.T, dnsAddr string, httpPort, tlsPort int, validity time.Duration) *tlsPebbleCA {
	t.Helper()
	bin := tlsPebbleBinary(t)
	dir := t.TempDir()
	lc := issueTLSLeaf(t, nil, "localhost", "127.0.0.1")
	certFile := tlsWriteFile(t, filepath.Join(dir, "listener.pem"), lc.CertPEM)
	keyFile := tlsWriteFile(t, filepath.Join(dir, "listener.key"), lc.KeyPEM)
	acmePort, mgmtPort := freePort(t), freePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(acmePort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}}
	if validity > 0 {
		conf["pebble"].(map[string]any)["profiles"] = map[string]any{
			"default": map[string]any{"description": "short-lived, for renewal tests", "validityPeriod": int(validity.Seconds())},
		}
	}
	b, _ := json.Marshal(conf)
	cfgFile := tlsWriteFile(t, filepath.Join(dir, "pebble.json"), b)
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_VA_ALWAYS_VALID=0", // really validate
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce errors to retry
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble output:\n%s", out)
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tlsCertPool(lc.CertPEM)}}}
	p := &tlsPebbleCA{Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort), ListenerCertFile: certFile}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
		if err == nil {
			p.Root, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && len(tlsCertPool(p.Root).Subjects()) > 0 { //nolint:staticcheck // only counts
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not come up: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := hc.Get(p.Directory)
	if err != nil {
		t.Fatalf("pebble directory: %v", err)
	}
	resp.Body.Close()
	return p
}
