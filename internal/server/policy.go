package server

import (
	"context"
	"slices"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
)

// Policy decides which names an identity may bind. It is consulted once per
// bind, never on the request path.
type Policy interface {
	// CheckSubdomain returns a *protocol.Error when id may not bind name.
	CheckSubdomain(ctx context.Context, id *auth.Identity, name string) error
	// CheckHostname returns a *protocol.Error when id may not bind the
	// custom domain host.
	CheckHostname(ctx context.Context, id *auth.Identity, host string) error
	// CheckPort returns a *protocol.Error when id may not bind a TCP port.
	CheckPort(ctx context.Context, id *auth.Identity, port int) error
	// MaxTunnels is how many tunnels id's user may hold at once (0: no limit).
	MaxTunnels(ctx context.Context, id *auth.Identity) int
}

// OpenPolicy allows any free subdomain and port (within a token's
// restrictions) and no custom hostname: with no user store there is no way
// to verify who owns a domain.
type OpenPolicy struct {
	// TunnelLimit is returned by MaxTunnels.
	TunnelLimit int
}

// CheckSubdomain implements Policy.
func (OpenPolicy) CheckSubdomain(ctx context.Context, id *auth.Identity, name string) error {
	return CheckTokenSubdomains(id, name)
}

// CheckHostname implements Policy.
func (OpenPolicy) CheckHostname(ctx context.Context, id *auth.Identity, host string) error {
	return protocol.Err(protocol.CodeForbidden, true,
		"custom hostname %s is not verified on this server (custom domains need user accounts: run the server with a data store and add it with 'porthole admin domains add')", host)
}

// CheckPort implements Policy.
func (OpenPolicy) CheckPort(ctx context.Context, id *auth.Identity, port int) error { return nil }

// MaxTunnels implements Policy.
func (p OpenPolicy) MaxTunnels(ctx context.Context, id *auth.Identity) int { return p.TunnelLimit }

// CheckTokenSubdomains enforces a credential's own restriction on names.
func CheckTokenSubdomains(id *auth.Identity, name string) error {
	if id == nil || id.Subdomains == nil || slices.Contains(id.Subdomains, name) {
		return nil
	}
	return protocol.Err(protocol.CodeForbidden, true, "this credential may not bind subdomain %q", name)
}
