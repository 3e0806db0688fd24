// Package inspect is the client's window on its own traffic: a bounded ring
// of the latest HTTP exchanges that went through its tunnels (request and
// response headers, bodies cut at a configurable size), the request
// inspector web page served from files embedded in the binary, replay of a
// recorded request to the local app, and the client's metrics as JSON
// (/api/metrics) and Prometheus text (/metrics).
//
// It owns the recorded data and the HTTP API over it. It does not proxy
// anything: package client calls Store.Begin for each request it forwards
// and tees the bodies into the returned Exchange, and it serves replays
// through the same forwarder a visitor's request takes (see Replayer). The
// connection state (/api/status) stays with package client; this package
// sees it only as a Snapshot for the metrics.
//
// Memory is bounded: at most Capacity exchanges are kept (the oldest is
// dropped first) and each keeps at most BodyLimit bytes of each body, so
// the recorded bodies take at most 2 x Capacity x BodyLimit bytes, plus
// the exchanges still in flight.
package inspect
