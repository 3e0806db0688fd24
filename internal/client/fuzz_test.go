package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/pires/go-proxyproto"

	"github.com/porthole/porthole/internal/config"
)

// FuzzProxyHeader round-trips the PROXY protocol header a tcp tunnel
// writes, for any pair of addresses the stream header may carry, through
// go-proxyproto's reader (what haproxy-compatible apps parse): it must be
// read back whole, without eating into the visitor's bytes, naming the
// visitor and the public address when both parse, LOCAL otherwise.
func FuzzProxyHeader(f *testing.F) {
	f.Add(true, "203.0.113.7:51234", "198.51.100.1:20001", []byte("payload"))
	f.Add(false, "203.0.113.7:51234", "198.51.100.1:20001", []byte("GET / HTTP/1.1\r\n"))
	f.Add(true, "[2001:db8::7]:51234", "[2001:db8::1]:20001", []byte{})
	f.Add(false, "[2001:db8::7]:51234", "[2001:db8::1]:20001", []byte("\r\n"))
	f.Add(true, "[::ffff:203.0.113.7]:1", "[::ffff:198.51.100.1]:65535", []byte("x"))
	f.Add(true, "203.0.113.7:51234", "[2001:db8::1]:20001", []byte("PROXY TCP4"))
	f.Add(false, "[fe80::1%eth0]:80", "127.0.0.1:0", []byte{0x0d, 0x0a})
	f.Add(true, "", "", []byte("payload"))
	f.Add(false, "not an address", "1.2.3.4:5", []byte{})

	f.Fuzz(func(t *testing.T, v2 bool, remote, public string, payload []byte) {
		version, want := ProxyProtocolV1, byte(1)
		if v2 {
			version, want = ProxyProtocolV2, 2
		}
		var b bytes.Buffer
		if err := writeProxyHeader(&b, version, remote, public); err != nil {
			t.Fatalf("writing the header for %q -> %q: %v", remote, public, err)
		}
		b.Write(payload)
		r := bufio.NewReader(&b)
		h, err := proxyproto.Read(r)
		if err != nil {
			t.Fatalf("go-proxyproto cannot read our %s header for %q -> %q: %v", version, remote, public, err)
		}
		if h.Version != want {
			t.Fatalf("version %d, want %d", h.Version, want)
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, payload) {
			t.Fatalf("payload after the header: %q, want %q", rest, payload)
		}
		src, errSrc := netip.ParseAddrPort(remote)
		dst, errDst := netip.ParseAddrPort(public)
		if errSrc != nil || errDst != nil {
			if h.Command != proxyproto.LOCAL {
				t.Fatalf("addresses %q -> %q do not parse, yet the header says %v", remote, public, h.Command)
			}
			return
		}
		if h.Command != proxyproto.PROXY {
			t.Fatalf("command %v for %q -> %q", h.Command, remote, public)
		}
		gs, gd, ok := h.TCPAddrs()
		if !ok {
			t.Fatalf("no TCP addresses read back for %q -> %q", remote, public)
		}
		// Zones cannot travel in the header; IPv4 may come back mapped
		// when the other address is IPv6.
		same := func(got *net.TCPAddr, want netip.AddrPort) bool {
			ap := got.AddrPort()
			return ap.Addr().Unmap() == want.Addr().Unmap().WithZone("") && ap.Port() == want.Port()
		}
		if !same(gs, src) || !same(gd, dst) {
			t.Fatalf("read back %v -> %v, wrote %v -> %v", gs, gd, src, dst)
		}
	})
}

// FuzzParseTarget: a TARGET argument either is refused or gives a scheme
// of its tunnel kind and a HOST:PORT with a port in range, which parses
// again to itself.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"3000", "localhost:3000", "127.0.0.1:8080", "[::1]:443", "http://app:80", "https://app",
		"https://[::1]:8443/", "tcp://db:5432", ":9000", "0", "65536", "http://a/b", "http://a?x", "ftp://a:1", " 80 "} {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, tcp bool, s string) {
		kind := "http"
		if tcp {
			kind = "tcp"
		}
		tg, err := ParseTarget(kind, s)
		if err != nil {
			if tg != (Target{}) {
				t.Fatalf("both %+v and %v", tg, err)
			}
			return
		}
		switch {
		case tcp && tg.Scheme == "tcp", !tcp && (tg.Scheme == "http" || tg.Scheme == "https"):
		default:
			t.Fatalf("%s target %q: scheme %q", kind, s, tg.Scheme)
		}
		_, port, err := net.SplitHostPort(tg.Host)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 {
			t.Fatalf("target %q gave host %q", s, tg.Host)
		}
		again, err := ParseTarget(kind, tg.Host)
		if err != nil || again.Host != tg.Host {
			t.Fatalf("%q gave %q, which parses to %+v, %v", s, tg.Host, again, err)
		}
	})
}

// FuzzClientConfig decodes arbitrary bytes as the client's TOML file the
// way `porthole start` does. Decoding must fail with a *config.Error or
// succeed; a config that then passes Validate must survive writing out
// and reading back: the same config, valid again.
func FuzzClientConfig(f *testing.F) {
	f.Add([]byte(`servers = ["wss://tunnel.example.com:8081"]
api_key = "ph_abc"
[tunnels.web]
proto = "http"
addr = "3000"
subdomain = "myapp"
basic_auth = ["me:secret"]
allow_cidr = ["10.0.0.0/8", "::1"]
request_header_add = ["X-A: b"]
health_path = "/healthz"
health_interval = "5s"
[tunnels.db]
proto = "tcp"
addr = "localhost:5432"
remote_port = 20001
proxy_protocol = "v2"
`))
	f.Add([]byte(`servers = ["ws://127.0.0.1:8081"]
[reconnect]
base = "1s"
max = "1m"
`))
	f.Add([]byte("servers = \"ws://x\"\n"))
	f.Add([]byte("[tunnels.a]\nproto = \"http\"\naddr = 80\n"))
	f.Add([]byte("unknown_key = 1\n"))
	f.Add([]byte("handshake_timeout = \"forever\"\n"))
	f.Add([]byte("[[tunnels]]\n"))
	f.Add([]byte("servers = [\"ws://a\"]\n[tunnels.\"we ird\"]\nproto = \"tcp\"\naddr = \"1\"\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DefaultConfig()
		if err := config.Decode("porthole.toml", data, &cfg); err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Msg == "" || ce.Line < 0 || ce.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("decode error %#v", err)
			}
			return
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := toml.Marshal(cfg)
		if err != nil {
			t.Fatalf("a valid config does not encode: %v", err)
		}
		again := DefaultConfig()
		if err := config.Decode("again.toml", out, &again); err != nil {
			t.Fatalf("a valid config, written out, does not read back: %v\n%s", err, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("a valid config, written out and read back, is invalid: %v\n%s", err, out)
		}
		if out2, _ := toml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("read back differently:\n%s\n---\n%s", out, out2)
		}
	})
}
