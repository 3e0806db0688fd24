// Package server is porthole's public side: it accepts tunnel clients on
// the tunnel listener, gives their tunnels public names, and proxies
// visitors' HTTP requests and TCP connections to them over the client's
// multiplexed session.
//
// It owns the listeners (public HTTP, tunnel, admin), the control-protocol
// conversation with each client, the HTTP reverse proxy and the error pages
// visitors see. Credential checks are delegated to an auth.Authenticator,
// name bookkeeping to a registry.Registry.
package server
