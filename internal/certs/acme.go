package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"

	"github.com/porthole/porthole/internal/logging"
)

// DomainChecker vouches for custom domains. The identity layer, which
// records who verified which domain, implements it.
type DomainChecker interface {
	// Allowed returns nil when host is a verified custom domain, so that
	// a certificate may be obtained (or renewed) for it.
	Allowed(ctx context.Context, host string) error
}

// DomainCheckerFunc adapts a function to DomainChecker.
type DomainCheckerFunc func(ctx context.Context, host string) error

// Allowed implements DomainChecker.
func (f DomainCheckerFunc) Allowed(ctx context.Context, host string) error { return f(ctx, host) }

// acmeCerts is the certmagic side: one cache shared by up to two configs,
// because certmagic solves every challenge of an issuer with its DNS
// solver once it has one, while custom domains are validated over HTTP or
// TLS on the public listeners.
type acmeCerts struct {
	domain  string
	log     *slog.Logger
	stats   *counters
	checker DomainChecker

	cache      *certmagic.Cache
	wildcard   *certmagic.Config     // *.DOMAIN and DOMAIN via DNS-01; nil when off
	onDemand   *certmagic.Config     // custom domains via HTTP-01/TLS-ALPN-01; nil when off
	httpIssuer *certmagic.ACMEIssuer // answers HTTP-01 on the public HTTP listener
	alpn       bool                  // TLS-ALPN-01 in use: listeners must offer acme-tls/1

	mu    sync.Mutex
	names map[string]bool // names of managed certificates seen in the cache
}

func newACME(cfg *ACMEConfig, o *Options, st *counters) (*acmeCerts, error) {
	a := &acmeCerts{domain: o.Domain, log: o.Logger, stats: st, checker: o.Checker, names: map[string]bool{}}
	zl := logging.Zap(o.Logger, "certmagic")
	var roots *x509.CertPool
	if cfg.CARoot != "" {
		pem, err := os.ReadFile(cfg.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root %s: no PEM certificate found", cfg.CARoot)
		}
	}
	ca := cfg.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	storage := &certmagic.FileStorage{Path: filepath.Join(o.DataDir, "certificates")}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(c certmagic.Certificate) (*certmagic.Config, error) { return a.configFor(c.Names), nil },
		RenewCheckInterval: cfg.RenewCheckInterval.D(),
		Logger:             zl,
	})
	newConfig := func(onDemand *certmagic.OnDemandConfig) *certmagic.Config {
		return certmagic.New(a.cache, certmagic.Config{
			Storage:            storage,
			Logger:             zl,
			OnEvent:            a.onEvent,
			OnDemand:           onDemand,
			DefaultServerName:  o.Domain,
			RenewalWindowRatio: cfg.RenewalWindowRatio,
			// Let's Encrypt ended OCSP; a staple fetch would only be an
			// outbound request per certificate for nothing.
			OCSP: certmagic.OCSPConfig{DisableStapling: true},
		})
	}
	issuer := func(c *certmagic.Config, t certmagic.ACMEIssuer) *certmagic.ACMEIssuer {
		t.CA, t.Email, t.Agreed, t.TrustedRoots, t.Logger = ca, cfg.Email, true, roots, zl
		return certmagic.NewACMEIssuer(c, t)
	}
	if cfg.Wildcard {
		p, err := dnsProvider(&cfg.DNS)
		if err != nil {
			return nil, err
		}
		d := cfg.DNS
		solver := &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider:        p,
			TTL:                d.TTL.D(),
			PropagationDelay:   d.PropagationDelay.D(),
			PropagationTimeout: d.PropagationTimeout.D(),
			Resolvers:          d.Resolvers,
			OverrideDomain:     d.OverrideDomain,
			Logger:             zl,
		}}
		if d.SkipPropagationCheck {
			solver.PropagationTimeout = -1
		}
		a.wildcard = newConfig(nil)
		a.wildcard.Issuers = []certmagic.Issuer{issuer(a.wildcard, certmagic.ACMEIssuer{
			DNS01Solver: solver,
		})}
	}
	if cfg.OnDemand {
		httpHost, httpPort := hostPort(o.HTTPAddr)
		_, tlsPort := hostPort(o.HTTPSAddr)
		a.alpn = cfg.challenge(ChallengeTLSALPN01) && o.HTTPSAddr != ""
		useHTTP := cfg.challenge(ChallengeHTTP01)
		if !useHTTP && !a.alpn {
			return nil, errors.New("tls.acme.on_demand: tls-alpn-01 needs https_addr, and http-01 is not among tls.acme.challenges")
		}
		a.onDemand = newConfig(&certmagic.OnDemandConfig{DecisionFunc: a.decide})
		// The public listeners answer challenges themselves (HTTP-01 via
		// HandleHTTPChallenge, TLS-ALPN-01 via GetCertificate); pointing
		// certmagic at their addresses makes its own solver listener fail
		// to bind and step aside instead of opening a second port.
		a.httpIssuer = issuer(a.onDemand, certmagic.ACMEIssuer{
			DisableHTTPChallenge:    !useHTTP,
			DisableTLSALPNChallenge: !a.alpn,
			ListenHost:              httpHost,
			AltHTTPPort:             httpPort,
			AltTLSALPNPort:          tlsPort,
		})
		a.onDemand.Issuers = []certmagic.Issuer{a.httpIssuer}
	}
	return a, nil
}

// configFor picks the config that manages (and renews) a certificate.
func (a *acmeCerts) configFor(names []string) *certmagic.Config {
	if a.wildcard != nil {
		for _, n := range names {
			if n == a.domain || n == "*."+a.domain {
				return a.wildcard
			}
		}
	}
	if a.onDemand != nil {
		return a.onDemand
	}
	return a.wildcard
}

// decide is the on-demand gate: certmagic calls it before obtaining or
// renewing a certificate for a name that no cached certificate covers.
// Every name a TLS client sends in SNI can get here, so the default is no.
func (a *acmeCerts) decide(ctx context.Context, name string) error {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	var err error
	switch {
	case name == a.domain || strings.HasSuffix(name, "."+a.domain):
		// The wildcard covers these; a certificate per tunnel would burn
		// the CA's rate limits and publish every tunnel name in CT logs.
		err = fmt.Errorf("%s is under %s, which the wildcard certificate covers", name, a.domain)
	case net.ParseIP(name) != nil:
		err = fmt.Errorf("%s is an IP address", name)
	case a.checker == nil:
		err = errors.New("no verified custom domains on this server")
	default:
		err = a.checker.Allowed(ctx, name)
	}
	if err != nil {
		a.stats.onDemandRefused.Add(1)
		a.log.Debug("on-demand certificate refused", "name", name, "reason", err)
		return err
	}
	a.stats.onDemandAllowed.Add(1)
	return nil
}

// onEvent counts and logs certmagic's certificate events. It runs
// synchronously inside certmagic, sometimes under its cache lock, so it
// only records.
func (a *acmeCerts) onEvent(ctx context.Context, event string, data map[string]any) error {
	renewal, _ := data["renewal"].(bool)
	k := 0
	if renewal {
		k = 1
	}
	name, _ := data["identifier"].(string)
	switch event {
	case "cert_obtaining":
		a.stats.attempts[k].Add(1)
		if renewal {
			a.log.Info("renewing certificate", "name", name, "remaining", data["remaining"])
		} else {
			a.log.Info("obtaining certificate", "name", name)
		}
	case "cert_obtained":
		a.stats.obtained[k].Add(1)
		if renewal {
			a.log.Info("certificate renewed", "name", name, "issuer", data["issuer"])
		} else {
			a.log.Info("certificate obtained", "name", name, "issuer", data["issuer"])
		}
	case "cert_failed":
		a.stats.failed[k].Add(1)
		what := "certificate could not be obtained"
		if renewal {
			what = "certificate renewal failed"
		}
		a.log.Error(what+"; retrying with backoff", "name", name, "err", data["error"])
	case "cached_managed_cert":
		if sans, ok := data["sans"].([]string); ok && len(sans) > 0 {
			a.mu.Lock()
			a.names[sans[0]] = true
			a.mu.Unlock()
		}
	}
	return nil
}

// start begins managing the wildcard certificate: loaded from storage at
// once when there, otherwise obtained in the background (with retries)
// so that a CA outage does not keep the server from starting.
func (a *acmeCerts) start(ctx context.Context) error {
	if a.wildcard == nil {
		return nil
	}
	return a.wildcard.ManageAsync(ctx, []string{"*." + a.domain, a.domain})
}

func (a *acmeCerts) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if a.onDemand != nil {
		return a.onDemand.GetCertificate(hello)
	}
	return a.wildcard.GetCertificate(hello)
}

func (a *acmeCerts) handleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return a.httpIssuer != nil && a.httpIssuer.HandleHTTPChallenge(w, r)
}

func (a *acmeCerts) certificates() []CertInfo {
	a.mu.Lock()
	names := make([]string, 0, len(a.names))
	for n := range a.names {
		names = append(names, n)
	}
	a.mu.Unlock()
	seen := map[string]bool{}
	var out []CertInfo
	for _, n := range names {
		for _, c := range a.cache.AllMatchingCertificates(n) {
			if seen[c.Hash()] || c.Leaf == nil || len(c.Names) == 0 {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, CertInfo{Source: "acme", Name: c.Names[0], NotAfter: c.Leaf.NotAfter})
		}
	}
	return out
}

func (a *acmeCerts) stop() { a.cache.Stop() }

// hostPort splits a listener address; a missing or zero port gives 0.
func hostPort(addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// acmeALPN is the protocol TLS-ALPN-01 validation negotiates (RFC 8737).
const acmeALPN = acmez.ACMETLS1Protocol
