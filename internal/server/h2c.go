package server

import "net/http"

// plainProtocols is what the plain HTTP listener speaks: HTTP/1.1, and
// with http.h2c (--h2c) also HTTP/2 with prior knowledge (RFC 9113
// section 3.3), for gRPC clients that use no TLS. The Upgrade: h2c dance
// of RFC 7540 is not offered (RFC 9113 deprecates it). HTTP/2 visitors
// there get the same limits as over TLS: http.max_concurrent_streams,
// the receive buffers, each request counted as a visitor connection.
func (s *Server) plainProtocols() *http.Protocols {
	if !s.cfg.HTTP.H2C {
		return nil
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}
