package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/store"
)

// Policy decides, from the store, which names an identity may bind:
// reserved subdomains and ports only for their owners, custom domains
// only for their verified owner. It implements the server's Policy
// interface (it is consulted once per bind, never per request).
type Policy struct {
	st  store.Store
	cfg Config
	dns *DNSVerifier
	log *slog.Logger
	now func() time.Time
}

// PolicyOptions are what a Policy is built from besides the Config.
type PolicyOptions struct {
	Store  store.Store
	Logger *slog.Logger
	Now    func() time.Time
}

// NewPolicy builds a Policy.
func NewPolicy(cfg Config, o PolicyOptions) *Policy {
	cfg = cfg.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Policy{
		st: o.Store, cfg: cfg, log: o.Logger, now: o.Now,
		dns: &DNSVerifier{Resolver: cfg.DNSResolver},
	}
}

// storeError marks a store failure inside VerifyDomain, told apart from
// the DNS answers it reports.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func (p *Policy) storeErr(err error) error {
	return internalError(p.log, "checking the name", err)
}

func forbidden(format string, args ...any) error {
	return protocol.Err(protocol.CodeForbidden, true, format, args...)
}

// CheckSubdomain implements the server's Policy.
func (p *Policy) CheckSubdomain(ctx context.Context, id *Identity, name string) error {
	if id != nil {
		if err := id.Scope.AllowSubdomain(name); err != nil {
			return err
		}
	}
	return p.checkReserved(ctx, id, store.ReservedSubdomain, name, "subdomain "+strconv.Quote(name))
}

// CheckPort implements the server's Policy.
func (p *Policy) CheckPort(ctx context.Context, id *Identity, port int) error {
	if id != nil {
		if err := id.Scope.AllowPort(port); err != nil {
			return err
		}
	}
	return p.checkReserved(ctx, id, store.ReservedPort, strconv.Itoa(port), "port "+strconv.Itoa(port))
}

func (p *Policy) checkReserved(ctx context.Context, id *Identity, kind store.ReservationKind, name, what string) error {
	owner, err := p.st.ReservationOwner(ctx, kind, name)
	switch {
	case err == nil:
		if id != nil && !id.Anonymous() && owner == id.User {
			return nil
		}
		return protocol.Err(protocol.CodeNameReserved, true, "%s is reserved for another user", what)
	case !errors.Is(err, store.ErrNotFound):
		return p.storeErr(err)
	}
	if p.cfg.RestrictToReservations {
		return forbidden("%s is not reserved for you, and this server lets users bind only their reservations (the operator reserves one with 'porthole admin reserve')", what)
	}
	return nil
}

// CheckHostname implements the server's Policy: host must be registered
// for the user and its TXT record seen. A check older than
// domain_recheck is repeated, so a record that disappeared stops the
// domain from binding.
func (p *Policy) CheckHostname(ctx context.Context, id *Identity, host string) error {
	if id != nil {
		if err := id.Scope.AllowHostname(host); err != nil {
			return err
		}
	}
	d, err := p.st.GetDomain(ctx, host)
	if errors.Is(err, store.ErrNotFound) {
		return forbidden("custom domain %s is not registered on this server (the operator adds it with 'porthole admin domains add --user USER %s')", host, host)
	}
	if err != nil {
		return p.storeErr(err)
	}
	if id == nil || id.Anonymous() || d.User != id.User {
		return forbidden("custom domain %s belongs to another user", host)
	}
	now := p.now()
	if d.Verified() && now.Sub(d.CheckedAt) < p.cfg.DomainRecheck.D() {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := VerifyDomain(cctx, p.st, p.dns, host, now); err != nil {
		if se := (*storeError)(nil); errors.As(err, &se) {
			return p.storeErr(se.err)
		}
		if d.Verified() && !errors.Is(err, ErrRecordMissing) && !errors.Is(err, ErrWrongToken) {
			// The resolver did not answer: a verified domain keeps
			// working rather than flap with the DNS server.
			p.log.Warn("custom domain re-check failed; keeping it verified", "hostname", host, "err", err)
			return nil
		}
		return forbidden("custom domain %s is not verified: %v; create the DNS record %s TXT %q", host, err, ChallengeName(host), d.Token)
	}
	return nil
}

// VerifyDomain checks host's TXT record and records the outcome: a
// definite failure un-verifies the domain, a resolver failure changes
// nothing.
func VerifyDomain(ctx context.Context, st store.Store, v *DNSVerifier, host string, now time.Time) (store.Domain, error) {
	d, err := st.GetDomain(ctx, host)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return d, err
		}
		return d, &storeError{err}
	}
	err = v.Check(ctx, d.Hostname, d.Token)
	if err != nil && !errors.Is(err, ErrRecordMissing) && !errors.Is(err, ErrWrongToken) {
		return d, err
	}
	if serr := st.SetDomainVerified(ctx, d.Hostname, err == nil, now); serr != nil {
		return d, &storeError{serr}
	}
	d2, gerr := st.GetDomain(ctx, host)
	if gerr == nil {
		d = d2
	}
	return d, err
}

// DomainAllowed reports whether host is a verified custom domain: the
// certificate manager asks before obtaining a certificate for it. It
// reads only the store, never DNS, so an unknown host costs one query.
func (p *Policy) DomainAllowed(ctx context.Context, host string) error {
	d, err := p.st.GetDomain(ctx, host)
	if err != nil {
		return err
	}
	if !d.Verified() {
		return fmt.Errorf("custom domain %s is not verified", host)
	}
	return nil
}

// UserLimits returns id's own limits, read afresh from the store; the
// server applies them over its [limits] defaults.
func (p *Policy) UserLimits(ctx context.Context, id *Identity) *limits.Overrides {
	if id == nil || id.Anonymous() {
		return nil
	}
	l := id.Limits
	if u, err := p.st.GetUser(ctx, id.User); err == nil {
		l = u.Limits
	}
	return &limits.Overrides{
		RequestsPerSecond:       l.RequestsPerSecond,
		Burst:                   l.Burst,
		BandwidthBytesPerSecond: l.BandwidthBytesPerSecond,
		MaxTunnelsPerUser:       l.MaxTunnels,
		MaxSessionsPerUser:      l.MaxSessions,
		MaxConnectionsPerTunnel: l.MaxConnectionsPerTunnel,
	}
}
