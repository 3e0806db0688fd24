// Package protocol defines porthole's wire protocol: the control messages a
// client and server exchange on the first stream of a session, and the header
// the server writes at the start of every proxied stream.
//
// It owns encoding, decoding and size caps. It does not know about
// WebSockets or multiplexing (package transport) nor about what the messages
// mean to a server or client. spec.md beside this file is the reference; the
// tests pin every constant here to it.
package protocol
