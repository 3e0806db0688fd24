// Package registry maps public names (hostnames, TCP ports) to the tunnel
// endpoints that serve them.
//
// A binding is a claim: an owner, a generation number that rises whenever
// the claim changes hands or endpoints, and, once its endpoint disconnects, a
// lease that keeps the name for the same owner until it expires (the grace
// period). Lookups happen on every proxied request and take no lock; claims
// and releases are serialized. The registry is an interface so that a
// multi-node implementation backed by a shared database can replace the
// in-memory one without touching the request path.
package registry
