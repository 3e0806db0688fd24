// Package limits holds porthole's rate, bandwidth and concurrency limits:
// their configuration (server-wide defaults, each overridable per user),
// the per-visitor-address table, bandwidth shaping, and the bookkeeping
// that makes every limit hit visible (a typed kind used as log field and
// metric label, counted, and logged at a rate that cannot flood the log).
//
// It does not decide where limits apply: the server calls in at the
// points where a request, connection, stream or bind is admitted.
package limits
