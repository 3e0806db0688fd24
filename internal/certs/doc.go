// Package certs owns the server's TLS certificates: where they come from
// and how they stay current.
//
// Two sources exist, and may be combined:
//
//   - Files (--tls-cert/--tls-key, usually a wildcard *.DOMAIN plus the
//     apex): re-read when they change on disk and on demand (SIGHUP), so
//     that the next handshake uses the new certificate without a restart.
//   - ACME through certmagic, stored in the data directory: the wildcard
//     certificate via DNS-01 through a libdns provider (RFC 2136 or
//     Cloudflare), and on-demand certificates for verified custom domains
//     via HTTP-01 or TLS-ALPN-01. On-demand issuance is gated by a
//     DomainChecker that the identity layer provides: a name it does not
//     vouch for never reaches the CA.
//
// The package hands out one *tls.Config (TLS 1.2 minimum, Go's defaults
// otherwise) whose GetCertificate reads the current certificate on every
// handshake, an HTTP handler hook for ACME HTTP-01 challenges, and a Stats
// snapshot for metrics. Listeners, ALPN for visitors and the Prometheus
// collector stay with the server package.
package certs
