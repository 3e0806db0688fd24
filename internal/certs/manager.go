package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
)

// Options configure a Manager.
type Options struct {
	// Domain is the server's base domain (tunnels are SUB.Domain).
	Domain string
	// CertFile and KeyFile, when set, are served and watched.
	CertFile, KeyFile string
	// DataDir holds ACME accounts and certificates (DataDir/certificates).
	DataDir string
	// HTTPAddr and HTTPSAddr are the public listeners' addresses, where
	// the CA validates on-demand certificates.
	HTTPAddr, HTTPSAddr string
	// Config is the [tls] table.
	Config Config
	// Checker vouches for custom domains; nil refuses every on-demand
	// certificate.
	Checker DomainChecker
	// Reload, when set, triggers a reload of the certificate files on
	// every receive (the command wires SIGHUP to it).
	Reload <-chan os.Signal
	Logger *slog.Logger
}

// Manager serves the configured certificates and keeps them current.
// Create it with New, hand TLSConfig to the listeners, then Start it.
type Manager struct {
	o     Options
	log   *slog.Logger
	stats counters
	files *FileSource // nil without files
	acme  *acmeCerts  // nil without ACME

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

// New loads the certificate files and prepares ACME. It does no network
// I/O; nothing is obtained before Start.
func New(o Options) (*Manager, error) {
	if o.Logger == nil {
		return nil, errors.New("certs: Options.Logger is required")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{o: o, log: o.Logger}
	if o.CertFile != "" {
		f, err := loadFiles(o.CertFile, o.KeyFile, o.Logger, &m.stats)
		if err != nil {
			return nil, err
		}
		m.files = f
	}
	if o.Config.ACME.Enabled() {
		a, err := newACME(&o.Config.ACME, &o, &m.stats)
		if err != nil {
			return nil, err
		}
		m.acme = a
		if m.files == nil && !o.Config.ACME.Wildcard {
			m.log.Warn("no certificate for the server's own domain: handshakes for "+o.Domain+" and its subdomains (tunnels, the tunnel listener) will fail; set tls_cert/tls_key or tls.acme.wildcard",
				"domain", o.Domain)
		}
		if o.Config.ACME.OnDemand && o.Checker == nil {
			m.log.Warn("tls.acme.on_demand is on, but nothing can vouch for custom domains yet: every on-demand certificate will be refused")
		}
	}
	if m.files == nil && m.acme == nil {
		return nil, errors.New("certs: no certificate source: set tls_cert/tls_key or [tls.acme]")
	}
	return m, nil
}

// TLSConfig returns the base configuration for the server's TLS
// listeners: TLS 1.2 at least, Go's defaults for the rest (cipher suites,
// curves, session tickets), and the certificate looked up per handshake
// so that reloads and renewals need no restart. Callers clone it and set
// their own NextProtos, keeping the ones it lists (acme-tls/1).
func (m *Manager) TLSConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate,
	}
	if m.acme != nil && m.acme.alpn {
		c.NextProtos = []string{acmeALPN}
	}
	return c
}

// GetCertificate picks the certificate for a handshake: the file
// certificate when it covers the requested name (or no name was sent),
// otherwise ACME's, which may obtain one on demand for a verified domain.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.files != nil {
		if m.acme == nil || hello.ServerName == "" ||
			(!slices.Contains(hello.SupportedProtos, acmeALPN) && m.files.Covers(hello.ServerName)) {
			return m.files.GetCertificate(hello)
		}
	}
	return m.acme.getCertificate(hello)
}

// Start watches the certificate files and starts ACME management. The
// work stops when ctx ends or Close is called.
func (m *Manager) Start(ctx context.Context) error {
	ctx, m.cancel = context.WithCancel(ctx)
	if m.files != nil {
		if iv := m.o.Config.ReloadInterval.D(); iv >= 0 {
			if iv == 0 {
				iv = DefaultReloadInterval
			}
			m.done.Go(func() { m.files.Watch(ctx, iv) })
		}
	}
	if m.o.Reload != nil {
		m.done.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-m.o.Reload:
					m.log.Info("reload requested")
					m.Reload()
				}
			}
		})
	}
	if m.acme != nil {
		if err := m.acme.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Reload re-reads the certificate files now. ACME certificates renew by
// themselves and are not affected.
func (m *Manager) Reload() error {
	if m.files == nil {
		return nil
	}
	_, err := m.files.Reload()
	return err
}

// HandleHTTPChallenge answers an ACME HTTP-01 challenge request and
// reports whether it did. The public HTTP listener calls it first.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.acme != nil && m.acme.handleHTTPChallenge(w, r)
}

// Stats implements StatsSource.
func (m *Manager) Stats() Stats {
	var s Stats
	m.stats.fill(&s)
	if m.files != nil {
		leaf := m.files.Leaf()
		s.Certificates = append(s.Certificates, CertInfo{Source: "file", Name: firstName(leaf.DNSNames, leaf.Subject.CommonName), NotAfter: leaf.NotAfter})
	}
	if m.acme != nil {
		s.Certificates = append(s.Certificates, m.acme.certificates()...)
	}
	return s
}

// Close stops the background work.
func (m *Manager) Close() {
	m.stopOnce.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.done.Wait()
		if m.acme != nil {
			m.acme.stop()
		}
	})
}

func firstName(names []string, fallback string) string {
	if len(names) > 0 {
		return names[0]
	}
	return fallback
}
