package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// LoadTLS builds the TLS configuration for the HTTPS and tunnel listeners
// from the certificate files in cfg, or returns nil when none is set.
func LoadTLS(cfg *Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls_cert/tls_key: %w", err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s: no PEM certificate found", cfg.ClientCA)
		}
		tc.ClientCAs = pool
		// A certificate is optional (API keys and tokens still work), but
		// one that is presented must verify.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
