package server

import (
	"context"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/limits"
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
	// UserLimits returns id's own limits, applied over the server's
	// [limits]; nil means the server's apply unchanged.
	UserLimits(ctx context.Context, id *auth.Identity) *limits.Overrides
}

// OpenPolicy allows any free subdomain and port (within a token's
// restrictions) and no custom hostname: with no user store there is no way
// to verify who owns a domain.
type OpenPolicy struct{}

// CheckSubdomain implements Policy.
func (OpenPolicy) CheckSubdomain(ctx context.Context, id *auth.Identity, name string) error {
	if id == nil {
		return nil
	}
	return id.Scope.AllowSubdomain(name)
}

// CheckHostname implements Policy.
func (OpenPolicy) CheckHostname(ctx context.Context, id *auth.Identity, host string) error {
	return protocol.Err(protocol.CodeForbidden, true,
		"custom hostname %s is not verified on this server (custom domains need user accounts: run the server with a data store and add it with 'porthole admin domains add')", host)
}

// CheckPort implements Policy.
func (OpenPolicy) CheckPort(ctx context.Context, id *auth.Identity, port int) error {
	if id == nil {
		return nil
	}
	return id.Scope.AllowPort(port)
}

// UserLimits implements Policy: without users there are no per-user limits.
func (OpenPolicy) UserLimits(ctx context.Context, id *auth.Identity) *limits.Overrides { return nil }
