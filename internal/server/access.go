package server

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/porthole/porthole/internal/protocol"
)

// access is a tunnel's compiled visitor access control. No password is
// kept as given: basic holds argon2id digests (basicauth.go).
type access struct {
	basic []credDigest
	// forwardAuth keeps the visitor's Authorization header for the local
	// app; by default the credential stays at the server.
	forwardAuth bool
	verified    credCache
	allow       []netip.Prefix
	deny        []netip.Prefix
	require     []headerPair
}

type headerPair struct{ name, value string }

// headerRules are a tunnel's compiled header add/remove rules.
type headerRules struct {
	reqAdd, respAdd       []headerPair
	reqRemove, respRemove []string
}

// compileAccess checks and compiles a bind's access rules; ctx bounds the
// wait for a hashing slot.
func compileAccess(ctx context.Context, a *protocol.Access) (*access, error) {
	if a == nil || (len(a.BasicAuth) == 0 && len(a.AllowCIDR) == 0 && len(a.DenyCIDR) == 0 && len(a.RequireHeader) == 0) {
		return nil, nil
	}
	for _, l := range [][]string{a.BasicAuth, a.AllowCIDR, a.DenyCIDR, a.RequireHeader} {
		if len(l) > protocol.MaxAccessRules {
			return nil, badOption("at most %d entries per access rule list", protocol.MaxAccessRules)
		}
	}
	c := &access{forwardAuth: a.BasicAuthForward}
	for _, cred := range a.BasicAuth {
		if user, _, ok := strings.Cut(cred, ":"); !ok || user == "" {
			return nil, badOption("basic auth entries are USER:PASSWORD")
		}
	}
	for _, list := range []struct {
		in  []string
		out *[]netip.Prefix
	}{{a.AllowCIDR, &c.allow}, {a.DenyCIDR, &c.deny}} {
		for _, s := range list.in {
			p, err := parsePrefix(s)
			if err != nil {
				return nil, badOption("%v", err)
			}
			*list.out = append(*list.out, p)
		}
	}
	var err error
	if c.require, err = parsePairs(a.RequireHeader, "required header"); err != nil {
		return nil, err
	}
	// Hashed last, once every entry is known to be well formed.
	for _, cred := range a.BasicAuth {
		d, err := hashCred(ctx, cred)
		if err != nil {
			return nil, protocol.Err(protocol.CodeShuttingDown, false, "bind abandoned: %v", err)
		}
		c.basic = append(c.basic, d)
	}
	return c, nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8) or an address", s)
}

func parsePairs(list []string, what string) ([]headerPair, error) {
	out := make([]headerPair, 0, len(list))
	for _, h := range list {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(strings.TrimSpace(value)) {
			return nil, badOption("%s %q is not \"Name: value\"", what, h)
		}
		out = append(out, headerPair{http.CanonicalHeaderKey(name), strings.TrimSpace(value)})
	}
	return out, nil
}

func compileHeaderRules(h *protocol.HeaderRules) (*headerRules, error) {
	if h == nil {
		return nil, nil
	}
	for _, l := range [][]string{h.RequestAdd, h.RequestRemove, h.ResponseAdd, h.ResponseRemove} {
		if len(l) > protocol.MaxAccessRules {
			return nil, badOption("at most %d entries per header rule list", protocol.MaxAccessRules)
		}
	}
	r := &headerRules{}
	var err error
	if r.reqAdd, err = parsePairs(h.RequestAdd, "request header"); err != nil {
		return nil, err
	}
	if r.respAdd, err = parsePairs(h.ResponseAdd, "response header"); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		in  []string
		out *[]string
	}{{h.RequestRemove, &r.reqRemove}, {h.ResponseRemove, &r.respRemove}} {
		for _, name := range l.in {
			name = strings.TrimSpace(name)
			if !httpguts.ValidHeaderFieldName(name) {
				return nil, badOption("header name %q is not valid", name)
			}
			*l.out = append(*l.out, http.CanonicalHeaderKey(name))
		}
	}
	return r, nil
}

func badOption(format string, args ...any) error {
	return protocol.Err(protocol.CodeBadRequest, true, format, args...)
}

// denial says why a visitor was refused.
type denial struct {
	status int
	reason string
	code   string
}

// Codes of access refusals.
const (
	codeBasicRequired = "basic_auth_required"
	codeBasicFailed   = "basic_auth_failed"
)

// hasBasic reports whether the tunnel asks visitors for a password.
func (a *access) hasBasic() bool { return a != nil && len(a.basic) > 0 }

// check decides whether r's visitor may reach the tunnel. Network rules
// come first, so a denied address learns nothing about the credentials.
func (a *access) check(r *http.Request) *denial {
	if a == nil {
		return nil
	}
	if a.denies(remoteIP(r.RemoteAddr)) {
		return &denial{http.StatusForbidden, "Your address may not reach this tunnel.", "access_denied_address"}
	}
	for _, h := range a.require {
		got, sent := r.Header[h.name]
		// Sent, and the first value matches: "X-Flag:" requires the
		// header with an empty value, not its absence.
		if !sent || len(got) == 0 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(h.value)) != 1 {
			return &denial{http.StatusForbidden, "This tunnel requires a header your request did not carry.", "access_denied_header"}
		}
	}
	if len(a.basic) > 0 {
		user, pass, ok := r.BasicAuth()
		if !ok {
			return &denial{http.StatusUnauthorized, "This tunnel requires a user name and password.", codeBasicRequired}
		}
		ok, err := verifyBasic(r.Context(), a.basic, &a.verified, user+":"+pass)
		if err != nil {
			// The visitor left while waiting for a hashing slot.
			return &denial{http.StatusServiceUnavailable, "The server is busy checking passwords.", "basic_auth_busy"}
		}
		if !ok {
			return &denial{http.StatusUnauthorized, "Wrong user name or password.", codeBasicFailed}
		}
	}
	return nil
}

// sameAs reports whether a and b were bound with the same rules.
func (a *access) sameAs(b *access) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	// The digests are deterministic within the process (one salt), so
	// equal entries have equal digests; no password is needed here.
	return slices.Equal(a.basic, b.basic) && a.forwardAuth == b.forwardAuth &&
		slices.Equal(a.allow, b.allow) && slices.Equal(a.deny, b.deny) && slices.Equal(a.require, b.require)
}

// applyRequest edits an outgoing request's headers.
func (h *headerRules) applyRequest(hdr http.Header) {
	if h == nil {
		return
	}
	for _, n := range h.reqRemove {
		hdr.Del(n)
	}
	for _, p := range h.reqAdd {
		hdr.Add(p.name, p.value)
	}
}

// applyResponse edits a response's headers.
func (h *headerRules) applyResponse(hdr http.Header) {
	if h == nil {
		return
	}
	for _, n := range h.respRemove {
		hdr.Del(n)
	}
	for _, p := range h.respAdd {
		hdr.Add(p.name, p.value)
	}
}

// denies reports whether the network rules refuse ip (TCP tunnels, where
// only those apply).
func (a *access) denies(ip netip.Addr) bool {
	if a == nil {
		return false
	}
	// Prefix.Contains never matches an address with a zone
	// ("fe80::1%eth0"): a link-local visitor would pass any rule.
	ip = ip.WithZone("")
	return slices.ContainsFunc(a.deny, func(p netip.Prefix) bool { return p.Contains(ip) }) ||
		(len(a.allow) > 0 && !slices.ContainsFunc(a.allow, func(p netip.Prefix) bool { return p.Contains(ip) }))
}
