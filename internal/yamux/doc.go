// Package yamux is a patched copy of github.com/hashicorp/yamux v0.1.2
// (MPL-2.0, LICENSE in this folder), the stream multiplexer under every
// porthole session. The wire protocol is unchanged (spec.md): a porthole
// built on this copy talks to one built on upstream.
//
// It is kept here, rather than as a module replace, so that
// `go install github.com/porthole/porthole/cmd/porthole@latest` keeps
// working (go install refuses modules with replace directives), and
// because the changes are to upstream's internals, which no wrapper can
// reach:
//
//   - Ping replies: upstream answered each ping on a new goroutine, so a
//     peer sending pings without reading the replies grew the goroutine
//     count without bound (hundreds of thousands in seconds). One reply
//     is pending at a time now (session.go, handlePing).
//   - A frame guard (guard.go): rates for pings, frames that move no data,
//     and frames for unknown streams, and a cap on streams the peer opens;
//     a peer past them is cut off with a FloodError.
//   - A receive budget shared by sessions (budget.go) and window
//     auto-tuning (stream.go, sendWindowUpdate): windows start at the
//     protocol's 256 KiB and grow towards MaxStreamWindowSize only while
//     the peer uses them, from a bounded pool; past the budget, the
//     session holding the most waits. Upstream granted every stream its
//     maximum window at once, so N stalled readers pinned N windows.
//   - Receive buffers in pooled 16 KiB chunks (recvbuf.go) instead of a
//     bytes.Buffer that doubled and kept its high-water capacity.
//   - Close closes both ways, as net.Conn's does: buffered data is
//     dropped and data that still arrives resets the stream. CloseWrite is
//     upstream's Close, a half-close. Upstream kept buffering for a stream
//     its reader had closed until StreamCloseTimeout.
//
// The tests from upstream run here too, with those that pinned the old
// behaviour (TestLargeWindow, the half-close in TestHalfClose) adjusted.
package yamux
