package client

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/porthole/porthole/internal/certs"
)

// TLSConfig builds the configuration for wss:// servers: the system roots
// plus CAFile, or the server's key pins; and the client certificate for
// mutual TLS.
func (c *Config) TLSConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.InsecureSkipVerify && len(c.ServerPins) > 0 {
		return nil, errors.New("--insecure-skip-verify and --server-pin contradict each other: a pin is a way to verify; drop --insecure-skip-verify")
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		// Always send it: with Certificates, Go leaves out a certificate
		// whose issuer the server did not list, and the server would then
		// say "no credential" instead of why it refused this one.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	if len(c.ServerPins) > 0 {
		pins := make([][sha256.Size]byte, 0, len(c.ServerPins))
		for _, p := range c.ServerPins {
			d, err := certs.ParsePin(p)
			if err != nil {
				return nil, fmt.Errorf("--server-pin: %w", err)
			}
			pins = append(pins, d)
		}
		// A pinned key is the server's identity: it replaces the chain and
		// name checks, which is what makes a self-signed server usable
		// without a CA. Go runs VerifyConnection after the handshake's
		// signature checks, so the server has proven it holds that key.
		tc.InsecureSkipVerify = true //nolint:gosec // verified by VerifyConnection
		tc.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPins(cs, pins) }
	}
	if c.InsecureSkipVerify {
		tc.InsecureSkipVerify = true //nolint:gosec // explicit opt-in, warned about at start
	}
	return tc, nil
}

// verifyPins accepts the connection when the server's leaf certificate
// has one of pins as its SPKI digest. Only the leaf counts: pinning a
// CA's key without also checking the name would accept any certificate
// that CA ever issued.
func verifyPins(cs tls.ConnectionState, pins [][sha256.Size]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return &PinMismatchError{}
	}
	leaf := cs.PeerCertificates[0]
	got := certs.SPKIDigest(leaf)
	for _, p := range pins {
		if subtle.ConstantTimeCompare(got[:], p[:]) == 1 {
			return nil
		}
	}
	return &PinMismatchError{Got: certs.SPKIPin(leaf), Names: certs.LeafNames(leaf)}
}

// PinMismatchError means the server's key matches no --server-pin. It is
// final: retrying reaches the same key, or the same interceptor.
type PinMismatchError struct {
	// Got is the pin of the key the server presented.
	Got   string
	Names []string
}

func (e *PinMismatchError) Error() string {
	if e.Got == "" {
		return "server presented no certificate to check --server-pin against"
	}
	return fmt.Sprintf("the server's certificate (for %s) does not match --server-pin: its key's pin is %s. "+
		"If the server's key was replaced on purpose, update --server-pin; otherwise something between you and the server is presenting its own certificate",
		strings.Join(e.Names, ", "), e.Got)
}

// explainTLSError turns a certificate verification failure into a message
// that says what to do about it, keeping the original error wrapped.
func explainTLSError(url string, err error) error {
	var pin *PinMismatchError
	if errors.As(err, &pin) {
		return fmt.Errorf("%s: %w", url, pin)
	}
	if certificateRefused(err) {
		return fmt.Errorf("%s: the server refused the client certificate given with --cert (%w); "+
			"it must be valid now and signed by the CA the server trusts (its --client-ca)", url, err)
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return fmt.Errorf("%s: %w", url, err)
	}
	leaf := cve.UnverifiedCertificates[0]
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%s: the server's certificate is not signed by a CA this machine trusts (%w). "+
			"If the server uses a self-signed certificate or a private CA, pass --ca-file with that CA's certificate (PEM), "+
			"or pin the server's key with --server-pin %s once you have checked that this is the pin the server logs at start",
			url, cve.Err, certs.SPKIPin(leaf))
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: the server's certificate does not cover the address you connect to (%w); "+
			"use a --server address with one of its names: %s", url, cve.Err, strings.Join(certs.LeafNames(leaf), ", "))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%s: the server's certificate is expired or not yet valid (%w); "+
			"the server must renew it, or this machine's clock is wrong", url, cve.Err)
	}
	return fmt.Errorf("%s: the server's certificate failed verification: %w", url, cve.Err)
}
