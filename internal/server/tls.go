package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/porthole/porthole/internal/certs"
	"github.com/porthole/porthole/internal/protocol"
)

// Certs is what the server needs from its certificate source besides the
// tls.Config: answers to ACME HTTP-01 challenges on the public HTTP
// listener, and numbers for /metrics. *certs.Manager implements it.
type Certs interface {
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
	certs.StatsSource
}

// TLSDeps are what LoadTLS needs besides the config.
type TLSDeps struct {
	Logger *slog.Logger
	// Domains vouches for custom domains before an on-demand certificate
	// is obtained for them; nil refuses them all.
	Domains certs.DomainChecker
	// Reload triggers a reload of the certificate files (SIGHUP).
	Reload <-chan os.Signal
}

// TLSSetup is the server's TLS material, ready for Deps.TLS and
// Deps.Certs. Both are nil when no certificate is configured.
type TLSSetup struct {
	Config *tls.Config
	Certs  Certs

	mgr *certs.Manager
}

// Close stops certificate watching and renewal.
func (t *TLSSetup) Close() {
	if t.mgr != nil {
		t.mgr.Close()
	}
}

// LoadTLS builds the TLS configuration for the HTTPS and tunnel listeners
// from the certificate files and the [tls] table in cfg, and starts
// watching the files and managing ACME certificates until ctx ends. With
// no certificate configured it returns an empty setup.
func LoadTLS(ctx context.Context, cfg *Config, d TLSDeps) (*TLSSetup, error) {
	if cfg.TLSCert == "" && !cfg.TLS.ACME.Enabled() {
		return &TLSSetup{}, nil
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	mgr, err := certs.New(certs.Options{
		Domain:    cfg.Domain,
		CertFile:  cfg.TLSCert,
		KeyFile:   cfg.TLSKey,
		DataDir:   cfg.DataDir,
		HTTPAddr:  cfg.HTTPAddr,
		HTTPSAddr: cfg.HTTPSAddr,
		Config:    cfg.TLS,
		Checker:   d.Domains,
		Reload:    d.Reload,
		Logger:    d.Logger.With("component", "tls"),
	})
	if err != nil {
		return nil, err
	}
	tc := mgr.TLSConfig()
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
	if err := mgr.Start(ctx); err != nil {
		mgr.Close()
		return nil, err
	}
	context.AfterFunc(ctx, mgr.Close)
	return &TLSSetup{Config: tc, Certs: mgr, mgr: mgr}, nil
}

// listenerTLS clones the base configuration for one listener with its own
// application protocols, keeping the base's (acme-tls/1, so that
// TLS-ALPN-01 validation can reach GetCertificate: Go refuses a handshake
// whose offered protocols the server does not list).
func listenerTLS(base *tls.Config, protos ...string) *tls.Config {
	c := base.Clone()
	c.NextProtos = append(protos, slices.DeleteFunc(slices.Clone(base.NextProtos), func(p string) bool {
		return slices.Contains(protos, p)
	})...)
	return c
}

// acmeHTTP answers ACME HTTP-01 challenges before h sees the request.
func (s *Server) acmeHTTP(h http.Handler) http.Handler {
	if s.deps.Certs == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.deps.Certs.HandleHTTPChallenge(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// redirectHTTPS sends a visitor who came over plain HTTP to the https URL
// when the tunnel asked for it, and reports whether it did.
func (s *Server) redirectHTTPS(t *tunnel, w http.ResponseWriter, r *http.Request) bool {
	if !t.httpsRedirect || r.TLS != nil || s.lnHTTPS == nil {
		return false
	}
	host := canonicalHost(r.Host)
	port := s.httpsPort
	if s.cfg.PublicHTTPSPort != 0 {
		port = s.cfg.PublicHTTPSPort
	}
	if port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	// 308 keeps the method and body (RFC 9110 section 15.4.9), so a POST
	// is not turned into a GET.
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	return true
}

// addHSTS sets Strict-Transport-Security on responses sent over TLS when
// the tunnel asked for it and the app did not set its own. RFC 6797
// section 7.2: the header is ignored, and must not be sent, over plain
// HTTP. includeSubDomains is never added: names below a tunnel's are not
// the tunnel's to decide for.
func addHSTS(t *tunnel, resp *http.Response) {
	if t.hstsMaxAge <= 0 || resp.Request == nil || resp.Request.TLS == nil {
		return
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		resp.Header.Set("Strict-Transport-Security", "max-age="+strconv.FormatInt(t.hstsMaxAge, 10))
	}
}

var (
	descCertExpiry = prometheus.NewDesc("porthole_tls_certificate_expiry_timestamp_seconds",
		"When each certificate in use expires (Unix time), by source (file, acme) and first name.", []string{"source", "name"}, nil)
	descCertReloads = prometheus.NewDesc("porthole_tls_certificate_reloads_total",
		"Certificate file reloads, by result (ok: a new certificate is served; error: the previous one stays).", []string{"result"}, nil)
	descACME = prometheus.NewDesc("porthole_tls_acme_operations_total",
		"ACME certificate operations by kind (new, renewal) and event (attempt, obtained, failed).", []string{"kind", "event"}, nil)
	descOnDemand = prometheus.NewDesc("porthole_tls_on_demand_decisions_total",
		"On-demand certificate decisions by result; a refused name never reaches the CA.", []string{"result"}, nil)
)

// tlsCollector exports the certificate source's Stats.
type tlsCollector struct{ src certs.StatsSource }

func (c tlsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCertExpiry, descCertReloads, descACME, descOnDemand} {
		ch <- d
	}
}

func (c tlsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	counter := func(d *prometheus.Desc, v int64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	seen := map[[2]string]bool{}
	for _, ci := range st.Certificates {
		// Two certificates may share a first name for a moment during a
		// renewal; a duplicate series would fail the whole scrape.
		k := [2]string{ci.Source, ci.Name}
		if seen[k] {
			continue
		}
		seen[k] = true
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), ci.Source, ci.Name)
	}
	counter(descCertReloads, st.Reloads, "ok")
	counter(descCertReloads, st.ReloadFailures, "error")
	for _, k := range []struct {
		kind string
		c    certs.ACMECounts
	}{{"new", st.ACME.New}, {"renewal", st.ACME.Renewal}} {
		counter(descACME, k.c.Attempts, k.kind, "attempt")
		counter(descACME, k.c.Obtained, k.kind, "obtained")
		counter(descACME, k.c.Failed, k.kind, "failed")
	}
	counter(descOnDemand, st.OnDemandAllowed, "allowed")
	counter(descOnDemand, st.OnDemandRefused, "refused")
}

// maxHSTSMaxAge caps hsts_max_age at two years, the longest value the
// HSTS preload list asks for; a typo should not pin browsers for decades.
const maxHSTSMaxAge = 2 * 365 * 24 * 3600

// bindTLSOptions checks and records a Bind's redirect and HSTS options.
func (s *Server) bindTLSOptions(b *protocol.Bind, t *tunnel) error {
	if (b.HTTPSRedirect || b.HSTSMaxAge != 0) && s.cfg.HTTPSAddr == "" {
		return protocol.Err(protocol.CodeBadRequest, true, "this server has no HTTPS listener, so it cannot redirect to HTTPS or send HSTS")
	}
	if b.HSTSMaxAge < 0 || b.HSTSMaxAge > maxHSTSMaxAge {
		return protocol.Err(protocol.CodeBadRequest, true, "hsts_max_age %d: want 1 to %d seconds", b.HSTSMaxAge, maxHSTSMaxAge)
	}
	t.httpsRedirect, t.hstsMaxAge = b.HTTPSRedirect, b.HSTSMaxAge
	return nil
}
