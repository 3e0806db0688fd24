package link

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Stream kinds: the first byte of every stream the dialing node opens
// (spec.md).
const (
	// kindHTTP streams carry HTTP/1.1 exchanges, kept alive for several.
	kindHTTP = 'H'
	// kindTCP streams carry one forwarded TCP connection after a
	// preamble and the holder's answer.
	kindTCP = 'T'
)

// Answers of the holder to a TCP preamble.
const (
	tcpOK      = 0 // bytes follow, both ways
	tcpStale   = 1 // this node does not hold the port at that generation
	tcpRefused = 2 // followed by a length byte and a message
)

// maxPreamble bounds a TCP preamble's body.
const maxPreamble = 512

// Link headers: set by the forwarding node on each request, read and
// removed by the holder before its Handler sees the request. Any a
// visitor sends are removed first, so only a node can set them.
const (
	headerPrefix  = "Porthole-Link-"
	headerHost    = "Porthole-Link-Host"    // the claimed hostname
	headerGen     = "Porthole-Link-Gen"     // the claim's generation, decimal
	headerVisitor = "Porthole-Link-Visitor" // the visitor's address, ip:port
	headerTLS     = "Porthole-Link-Tls"     // "<version> <server name>" when the visitor used TLS
	headerFrom    = "Porthole-Link-From"    // the forwarding node's name, for logs
	headerNonce   = "Porthole-Link-Nonce"   // echoed in headerStale
	// headerContinue goes with the Expect: 100-continue the forwarding
	// node sets on a request with a body (net/http hides the Expect from
	// the holder's handler).
	headerContinue = "Porthole-Link-Continue"
	// headerStale marks the holder's own 421: its value is the request's
	// nonce, which the app behind the tunnel never sees, so an app's 421
	// is passed on as it is instead of being taken for a stale claim.
	headerStale = "Porthole-Link-Stale"
)

// stripLinkHeaders removes every link header from h.
func stripLinkHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			delete(h, k)
		}
	}
}

// forwarded is what the link headers of one request say.
type forwarded struct {
	host    string
	gen     uint64
	visitor netip.AddrPort
	tls     *tls.ConnectionState
	from    string
	nonce   string
}

// parseForwarded reads the link headers of r.
func parseForwarded(h http.Header) (forwarded, error) {
	var f forwarded
	f.host = h.Get(headerHost)
	if f.host == "" || len(f.host) > 253 {
		return f, errors.New("missing or overlong " + headerHost)
	}
	gen, err := strconv.ParseUint(h.Get(headerGen), 10, 64)
	if err != nil {
		return f, fmt.Errorf("bad %s: %w", headerGen, err)
	}
	f.gen = gen
	if f.visitor, err = netip.ParseAddrPort(h.Get(headerVisitor)); err != nil {
		return f, fmt.Errorf("bad %s: %w", headerVisitor, err)
	}
	if v := h.Get(headerTLS); v != "" {
		ver, sni, _ := strings.Cut(v, " ")
		n, err := strconv.ParseUint(ver, 10, 16)
		if err != nil {
			return f, fmt.Errorf("bad %s: %w", headerTLS, err)
		}
		f.tls = &tls.ConnectionState{Version: uint16(n), HandshakeComplete: true, ServerName: sni}
	}
	f.from = h.Get(headerFrom)
	f.nonce = h.Get(headerNonce)
	return f, nil
}

// setForwarded writes f as link headers into h.
func setForwarded(h http.Header, f forwarded) {
	h.Set(headerHost, f.host)
	h.Set(headerGen, strconv.FormatUint(f.gen, 10))
	h.Set(headerVisitor, f.visitor.String())
	if f.tls != nil {
		h.Set(headerTLS, strconv.FormatUint(uint64(f.tls.Version), 10)+" "+f.tls.ServerName)
	}
	if f.from != "" {
		h.Set(headerFrom, f.from)
	}
	h.Set(headerNonce, f.nonce)
}

// tcpPreamble opens a TCP stream: which port at which generation, for
// which visitor, from which node.
type tcpPreamble struct {
	port    uint16
	gen     uint64
	visitor netip.AddrPort
	from    string
}

// appendTCPPreamble encodes p after its kind byte: a 2-byte length, then
// port (2), generation (8), the visitor's length-prefixed binary address
// and the node name, length-prefixed.
func appendTCPPreamble(b []byte, p tcpPreamble) ([]byte, error) {
	addr, err := p.visitor.MarshalBinary()
	if err != nil {
		return nil, err
	}
	from := p.from
	if len(from) > 255 {
		from = from[:255]
	}
	n := 2 + 8 + 1 + len(addr) + 1 + len(from)
	b = append(b, kindTCP)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint16(b, p.port)
	b = binary.BigEndian.AppendUint64(b, p.gen)
	b = append(b, byte(len(addr)))
	b = append(b, addr...)
	b = append(b, byte(len(from)))
	return append(b, from...), nil
}

var errPreamble = errors.New("malformed TCP preamble")

// readTCPPreamble reads a preamble's body (the kind byte already read).
func readTCPPreamble(r io.Reader) (tcpPreamble, error) {
	var p tcpPreamble
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return p, err
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n > maxPreamble || n < 12 {
		return p, errPreamble
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return p, err
	}
	return parseTCPPreamble(buf)
}

func parseTCPPreamble(buf []byte) (tcpPreamble, error) {
	var p tcpPreamble
	if len(buf) < 11 {
		return p, errPreamble
	}
	p.port = binary.BigEndian.Uint16(buf)
	p.gen = binary.BigEndian.Uint64(buf[2:])
	al := int(buf[10])
	rest := buf[11:]
	if al > len(rest) {
		return p, errPreamble
	}
	if err := p.visitor.UnmarshalBinary(rest[:al]); err != nil || !p.visitor.IsValid() {
		return p, errPreamble
	}
	rest = rest[al:]
	if len(rest) < 1 || int(rest[0]) != len(rest)-1 {
		return p, errPreamble
	}
	p.from = string(rest[1:])
	if p.port == 0 {
		return p, errPreamble
	}
	return p, nil
}
