package link

import (
	"bytes"
	"net/http"
	"net/netip"
	"testing"
)

// FuzzTCPPreamble: any bytes are a preamble or an error, never a panic,
// and what encodes decodes to itself.
func FuzzTCPPreamble(f *testing.F) {
	good, _ := appendTCPPreamble(nil, tcpPreamble{port: 7000, gen: 3, visitor: netip.MustParseAddrPort("[2001:db8::1]:443"), from: "node-a"})
	f.Add(good[1:])
	v4, _ := appendTCPPreamble(nil, tcpPreamble{port: 1, gen: 0, visitor: netip.MustParseAddrPort("192.0.2.1:1")})
	f.Add(v4[1:])
	f.Add([]byte{0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := readTCPPreamble(bytes.NewReader(b))
		if err != nil {
			return
		}
		enc, err := appendTCPPreamble(nil, p)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		q, err := readTCPPreamble(bytes.NewReader(enc[1:]))
		if err != nil || q != p {
			t.Fatalf("round trip: %+v -> %+v, %v", p, q, err)
		}
	})
}

// FuzzLinkHeaders: any header values parse or fail cleanly, and what is
// set parses back.
func FuzzLinkHeaders(f *testing.F) {
	f.Add("app.example.test", "1", "192.0.2.1:5", "772 app.example.test", "node-a")
	f.Add("", "x", "nonsense", "abc", "")
	f.Add("h", "18446744073709551615", "[::1]:0", "65536 x", "n")
	f.Fuzz(func(t *testing.T, host, gen, visitor, tlsv, from string) {
		h := http.Header{}
		h.Set(headerHost, host)
		h.Set(headerGen, gen)
		h.Set(headerVisitor, visitor)
		h.Set(headerTLS, tlsv)
		h.Set(headerFrom, from)
		fw, err := parseForwarded(h)
		if err != nil {
			return
		}
		h2 := http.Header{}
		setForwarded(h2, fw)
		fw2, err := parseForwarded(h2)
		if err != nil || fw2.host != fw.host || fw2.gen != fw.gen || fw2.visitor != fw.visitor {
			t.Fatalf("round trip: %+v -> %+v, %v", fw, fw2, err)
		}
		stripLinkHeaders(h2)
		if len(h2) != 0 {
			t.Fatalf("left after strip: %v", h2)
		}
	})
}
