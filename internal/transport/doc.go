// Package transport turns one WebSocket into a multiplexed session: many
// independent, flow-controlled streams over a single connection that passes
// HTTP proxies and CDNs.
//
// It owns the WebSocket handshake (github.com/coder/websocket), the
// multiplexer (github.com/hashicorp/yamux), the optional zstd compression
// below it (compress.go) and their tuning. It does not
// read or write control messages (package protocol) nor decide who may
// connect (the server does, before calling Accept).
package transport
