// Package client is porthole's laptop side: it dials a server's tunnel
// listener, binds tunnels, and serves the streams the server opens by
// forwarding them to local apps. It reconnects on its own, with exponential
// backoff and failover across servers, and gets its names back.
//
// It owns the control-protocol conversation from the client's side, the
// local forwarders (an HTTP reverse proxy per HTTP tunnel, a byte pipe per
// TCP stream) and the local status API. Printing and flags are left to
// cmd/porthole.
package client
