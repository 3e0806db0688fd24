package client

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/pires/go-proxyproto"
)

// PROXY protocol versions a tcp tunnel can send to its local app.
const (
	ProxyProtocolV1 = "v1" // text: "PROXY TCP4 SRC DST SPORT DPORT\r\n"
	ProxyProtocolV2 = "v2" // binary, 16 bytes plus the addresses
)

func validateProxyProtocol(proto, v string) error {
	switch v {
	case "":
		return nil
	case ProxyProtocolV1, ProxyProtocolV2:
		if proto != "tcp" {
			return fmt.Errorf("proxy_protocol is for tcp tunnels (http tunnels get X-Forwarded-For)")
		}
		return nil
	}
	return fmt.Errorf("proxy_protocol %q: want %q or %q", v, ProxyProtocolV2, ProxyProtocolV1)
}

// proxyHeader builds the PROXY protocol header (haproxy's
// proxy-protocol.txt) that tells the local app who the visitor is: the
// source is the visitor's address and the destination the server's public
// address it connected to, as the stream header reports them. When either
// is missing or unparsable (an older server), the header says so (LOCAL in
// v2, "PROXY UNKNOWN" in v1) and the app falls back to the connection's
// own addresses, as the specification asks.
func proxyHeader(version, remote, public string) *proxyproto.Header {
	v := byte(2)
	if version == ProxyProtocolV1 {
		v = 1
	}
	src, errSrc := netip.ParseAddrPort(remote)
	dst, errDst := netip.ParseAddrPort(public)
	if errSrc != nil || errDst != nil {
		return proxyproto.HeaderProxyFromAddrs(v, nil, nil)
	}
	return proxyproto.HeaderProxyFromAddrs(v, tcpAddr(src), tcpAddr(dst))
}

// tcpAddr converts ap, unmapping an IPv4-mapped IPv6 address so that an
// IPv4 visitor is sent as TCP4.
func tcpAddr(ap netip.AddrPort) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// writeProxyHeader sends the header as the first bytes to the local app.
func writeProxyHeader(w io.Writer, version, remote, public string) error {
	b, err := proxyHeader(version, remote, public).Format()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
