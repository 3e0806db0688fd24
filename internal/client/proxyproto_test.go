package client

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/pires/go-proxyproto"
)

func TestProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		version, remote, public string
		cmd                     proxyproto.ProtocolVersionAndCommand
		family                  proxyproto.AddressFamilyAndProtocol
		src, dst                string
	}{
		{"v2", "203.0.113.7:51234", "198.51.100.1:20001", proxyproto.PROXY, proxyproto.TCPv4, "203.0.113.7:51234", "198.51.100.1:20001"},
		{"v2", "[2001:db8::7]:51234", "[2001:db8::1]:20001", proxyproto.PROXY, proxyproto.TCPv6, "[2001:db8::7]:51234", "[2001:db8::1]:20001"},
		// An IPv4 visitor on a dual-stack listener is still TCP4.
		{"v2", "[::ffff:203.0.113.7]:51234", "[::ffff:198.51.100.1]:20001", proxyproto.PROXY, proxyproto.TCPv4, "203.0.113.7:51234", "198.51.100.1:20001"},
		// A v4 visitor on a v6 address: sent as v6, the v4 one mapped.
		{"v2", "203.0.113.7:51234", "[2001:db8::1]:20001", proxyproto.PROXY, proxyproto.TCPv6, "203.0.113.7:51234", "[2001:db8::1]:20001"},
		{"v1", "203.0.113.7:51234", "198.51.100.1:20001", proxyproto.PROXY, proxyproto.TCPv4, "203.0.113.7:51234", "198.51.100.1:20001"},
		// An older server sends no public address: the header says so.
		{"v2", "203.0.113.7:51234", "", proxyproto.LOCAL, proxyproto.UNSPEC, "", ""},
		{"v1", "", "", proxyproto.LOCAL, proxyproto.UNSPEC, "", ""},
	} {
		var b bytes.Buffer
		if err := writeProxyHeader(&b, tc.version, tc.remote, tc.public); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		b.WriteString("payload")
		r := bufio.NewReader(&b)
		h, err := proxyproto.Read(r)
		if err != nil {
			t.Fatalf("%+v: the library cannot read what we wrote: %v", tc, err)
		}
		want := byte(2)
		if tc.version == "v1" {
			want = 1
		}
		if h.Version != want || h.Command != tc.cmd || h.TransportProtocol != tc.family {
			t.Errorf("%+v: got version %d command %v family %v", tc, h.Version, h.Command, h.TransportProtocol)
		}
		if tc.src != "" {
			src, dst, ok := h.TCPAddrs()
			if !ok || src.String() != tc.src || dst.String() != tc.dst {
				t.Errorf("%+v: got %v -> %v (%t)", tc, src, dst, ok)
			}
		}
		if rest, _ := r.ReadString(0); rest != "payload" {
			t.Errorf("%+v: the header ate into the payload: %q", tc, rest)
		}
	}
}

func TestProxyProtocolConfig(t *testing.T) {
	ok := TunnelConfig{Proto: "tcp", Addr: "5432", ProxyProtocol: "v2"}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []TunnelConfig{
		{Proto: "tcp", Addr: "5432", ProxyProtocol: "v3"},
		{Proto: "tcp", Addr: "5432", ProxyProtocol: "V2 "},
		{Proto: "http", Addr: "3000", ProxyProtocol: "v2"},
	} {
		err := bad.validate()
		if err == nil || !strings.Contains(err.Error(), "proxy_protocol") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
