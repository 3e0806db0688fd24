// Package link is the cluster link: the authenticated connection between
// two porthole nodes over which a node that received a visitor's HTTP
// request or TCP connection passes it, once, to the node that holds the
// tunnel's client session.
//
// It owns the link's authentication (a TLS 1.3 identity derived from the
// shared cluster secret, pinned by both ends: identity.go), the limits on
// connections that have not proved the secret yet (server.go), the
// multiplexed session per peer (one TLS connection carrying yamux
// streams, each an HTTP/1.1 exchange or a TCP byte pipe: session.go),
// and the forwarding itself with httputil.ReverseProxy semantics
// (forward_http.go, dial_tcp.go) and its holder side (serve_http.go,
// serve_tcp.go). The wire format is in spec.md.
//
// It does not know who holds a tunnel: the caller looks that up (the
// cluster registry) and passes the holder's address and the claim's
// generation; the holder's Handler checks that generation and answers
// ErrStale when it no longer holds the claim.
package link
