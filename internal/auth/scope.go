package auth

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/porthole/porthole/internal/protocol"
)

// Scope restricts the names a credential may bind, over what its user
// may bind anyway (reservations, verified domains). A credential without
// a scope (nil) is restricted by nothing more; one with a scope may bind
// only what the scope grants, of every kind: a scope that names
// subdomains grants no custom hostname and no TCP port.
type Scope struct {
	// Subdomains it may bind; none means no subdomain, not even a random
	// one.
	Subdomains []string `json:"subdomains,omitempty"`
	// Hostnames are the custom domains it may bind (each must also be
	// verified for the user).
	Hostnames []string `json:"hostnames,omitempty"`
	// TCP grants any TCP port; TCPPorts grants only those.
	TCP      bool  `json:"tcp,omitempty"`
	TCPPorts []int `json:"tcp_ports,omitempty"`
}

// Empty reports whether s grants nothing at all.
func (s *Scope) Empty() bool {
	return s != nil && len(s.Subdomains) == 0 && len(s.Hostnames) == 0 && !s.TCP && len(s.TCPPorts) == 0
}

// String describes what s grants, for refusals and logs.
func (s *Scope) String() string {
	if s == nil {
		return "unrestricted"
	}
	var parts []string
	if len(s.Subdomains) > 0 {
		parts = append(parts, "subdomains "+strings.Join(s.Subdomains, ", "))
	}
	if len(s.Hostnames) > 0 {
		parts = append(parts, "hostnames "+strings.Join(s.Hostnames, ", "))
	}
	switch {
	case s.TCP:
		parts = append(parts, "any TCP port")
	case len(s.TCPPorts) > 0:
		ps := make([]string, len(s.TCPPorts))
		for i, p := range s.TCPPorts {
			ps[i] = strconv.Itoa(p)
		}
		parts = append(parts, "TCP ports "+strings.Join(ps, ", "))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

func (s *Scope) refuse(format string, args ...any) error {
	return protocol.Err(protocol.CodeForbidden, true, "%s; this credential's scope allows %s", fmt.Sprintf(format, args...), s.String())
}

// AllowSubdomain returns a final forbidden error unless s lets name bind.
func (s *Scope) AllowSubdomain(name string) error {
	if s == nil || slices.Contains(s.Subdomains, name) {
		return nil
	}
	return s.refuse("this credential may not bind subdomain %q", name)
}

// AllowHostname returns a final forbidden error unless s lets the custom
// domain host bind.
func (s *Scope) AllowHostname(host string) error {
	if s == nil || slices.Contains(s.Hostnames, strings.ToLower(strings.TrimSuffix(host, "."))) {
		return nil
	}
	return s.refuse("this credential may not bind custom hostname %s", host)
}

// AllowPort returns a final forbidden error unless s lets TCP port bind.
func (s *Scope) AllowPort(port int) error {
	if s == nil || s.TCP || slices.Contains(s.TCPPorts, port) {
		return nil
	}
	if len(s.TCPPorts) > 0 {
		return s.refuse("this credential may not bind TCP port %d (ask for a granted one with --remote-port)", port)
	}
	return s.refuse("this credential may not open TCP tunnels")
}

// scopeClaims names the claims a scope is read from.
type scopeClaims struct {
	subdomains, hostnames, tcp, tcpPorts string
}

// defaultScopeClaims are the claims porthole's own tokens carry.
var defaultScopeClaims = scopeClaims{subdomains: "subdomains", hostnames: "hostnames", tcp: "tcp", tcpPorts: "tcp_ports"}

// readScope builds a scope from a token's claims: nil when none of the
// scope claims is present, so that a token without them acts with its
// user's full rights, as an API key does.
func readScope(claims map[string]any, n scopeClaims) (*Scope, error) {
	var sc Scope
	present := false
	strs := func(name string) ([]string, error) {
		raw, ok := claims[name]
		if !ok {
			return nil, nil
		}
		present = true
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("the token's %q claim is not a list of names", name)
		}
		out := make([]string, 0, len(list))
		for _, x := range list {
			v, ok := x.(string)
			if !ok || v == "" {
				return nil, fmt.Errorf("the token's %q claim is not a list of names", name)
			}
			out = append(out, strings.ToLower(strings.TrimSuffix(v, ".")))
		}
		return out, nil
	}
	var err error
	if sc.Subdomains, err = strs(n.subdomains); err != nil {
		return nil, err
	}
	if sc.Hostnames, err = strs(n.hostnames); err != nil {
		return nil, err
	}
	if raw, ok := claims[n.tcp]; ok {
		present = true
		b, ok := raw.(bool)
		if !ok {
			return nil, fmt.Errorf("the token's %q claim is not true or false", n.tcp)
		}
		sc.TCP = b
	}
	if raw, ok := claims[n.tcpPorts]; ok {
		present = true
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("the token's %q claim is not a list of port numbers", n.tcpPorts)
		}
		for _, x := range list {
			f, ok := x.(float64)
			if !ok || f != float64(int(f)) || f < 1 || f > 65535 {
				return nil, fmt.Errorf("the token's %q claim is not a list of port numbers (1-65535)", n.tcpPorts)
			}
			sc.TCPPorts = append(sc.TCPPorts, int(f))
		}
	}
	if !present {
		return nil, nil
	}
	return &sc, nil
}
