// Package names validates and generates the subdomains tunnels are served
// under. It owns the naming rules (RFC 1123 labels, the reserved list) and
// the three generation strategies; it does not know who holds which name
// (package registry).
package names
