package inspect

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// FuzzRenderBody renders arbitrary captured bytes, a request or response
// body from a visitor or the local app, as the inspector shows them. The
// result must carry the captured bytes unchanged, decode gzip only for a
// whole body, show JSON only when it is that JSON, and stay within a
// bounded multiple of the body and the limit however the bytes are
// nested or compressed; for valid JSON, indentedSize must be exact.
func FuzzRenderBody(f *testing.F) {
	f.Add([]byte(`{"a":[1,2,{"b":"c"}],"d":{}}`), "application/json", "", false, uint16(1024))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`), "", "", false, uint16(1024))
	f.Add([]byte(strings.Repeat("[", 3000)+strings.Repeat("]", 3000)), "application/json", "", false, uint16(64))
	f.Add([]byte("plain text\r\nline two\t\n"), "text/plain", "", false, uint16(10))
	f.Add([]byte{0, 1, 2, 0xff}, "application/octet-stream", "", false, uint16(10))
	f.Add(gzipped(`{"zipped":true}`), "application/json", "gzip", false, uint16(100))
	f.Add(gzipped(strings.Repeat("a", 100000)), "text/plain", "gzip", false, uint16(100))
	f.Add(gzipped("cut"), "", "gzip", true, uint16(100))
	f.Add([]byte(`{"s":"\"quoted\\\" ] } ,"}   `), "application/problem+json", "identity", false, uint16(0))
	f.Add([]byte("\xe2\x82"), "", "br", false, uint16(5))
	f.Add([]byte{}, "", "", false, uint16(0))
	f.Fuzz(func(t *testing.T, captured []byte, ctype, enc string, truncated bool, limit uint16) {
		size := int64(len(captured))
		if truncated {
			size++
		}
		h := http.Header{}
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
		if enc != "" {
			h.Set("Content-Encoding", enc)
		}
		b := RenderBody(captured, size, h, ByteSize(limit))
		if raw, err := base64.StdEncoding.DecodeString(b.Base64); err != nil || !bytes.Equal(raw, captured) {
			t.Fatalf("base64 does not carry the captured bytes: %v", err)
		}
		if b.Captured != len(captured) || b.Size != size || b.Truncated != truncated {
			t.Fatalf("sizes %+v for %d captured of %d", b, len(captured), size)
		}
		if b.Decoded != "" && truncated {
			t.Fatal("decoded a cut body")
		}
		switch b.Kind {
		case "empty":
			if len(captured) != 0 {
				t.Fatal("empty kind for a body")
			}
		case "json":
			var got, want bytes.Buffer
			if json.Compact(&got, []byte(b.Display)) != nil {
				t.Fatalf("JSON display is not JSON: %q", b.Display)
			}
			if b.Decoded == "" {
				json.Compact(&want, captured)
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("JSON display %q is not the body %q", b.Display, captured)
				}
			}
		case "text", "binary":
		default:
			t.Fatalf("kind %q", b.Kind)
		}
		n := max(len(captured), int(limit))
		if bound := max(maxIndented(n), 5*n+80); len(b.Display) > bound {
			t.Fatalf("%d bytes displayed for %d captured (limit %d)", len(b.Display), len(captured), limit)
		}
		// json.Indent is only run where it is cheap: deep nesting makes
		// its output huge, which is the point of the estimate.
		if json.Valid(captured) && indentedSize(captured) <= 1<<20 {
			var buf bytes.Buffer
			json.Indent(&buf, captured, "", "  ")
			if got := indentedSize(captured); got != buf.Len() {
				t.Fatalf("indentedSize %d, json.Indent gives %d bytes for %q", got, buf.Len(), captured)
			}
		}
	})
}

// FuzzParseByteSize: a size (body_limit in the client's file, or a flag)
// either is refused or is a non-negative count of bytes that prints in a
// form that parses back to itself.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"65536", "64KiB", "64k", "1MiB", "1m", "0", "12b", " 3 kb ", "-1", "1.5m", "9223372036854775807", "4611686018427387904k", "", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("%q gave %d", s, v)
		}
		text, _ := v.MarshalText()
		var again ByteSize
		if err := again.UnmarshalText(text); err != nil || again != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, v, text, again, err)
		}
	})
}
