package inspect

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Summary is one line of the request list.
type Summary struct {
	ID           uint64    `json:"id"`
	Tunnel       string    `json:"tunnel"`
	ReplayOf     uint64    `json:"replay_of,omitempty"`
	Start        time.Time `json:"start"`
	Done         bool      `json:"done"`
	DurationMS   float64   `json:"duration_ms"`
	Method       string    `json:"method"`
	Path         string    `json:"path"`
	Host         string    `json:"host"`
	Status       int       `json:"status"`
	RequestSize  int64     `json:"request_size"`
	ResponseSize int64     `json:"response_size"`
	Error        string    `json:"error,omitempty"`
}

// summaryLocked builds x's summary; the caller holds x.s.mu.
func (x *Exchange) summaryLocked() Summary {
	x.mu.Lock()
	reqSize, respSize := x.reqBody.size, x.respBody.size
	x.mu.Unlock()
	d := x.duration
	if !x.done {
		d = x.s.clock().Sub(x.start)
	}
	return Summary{
		ID:           x.id,
		Tunnel:       x.tunnel,
		ReplayOf:     x.replayOf,
		Start:        x.start,
		Done:         x.done,
		DurationMS:   float64(d.Microseconds()) / 1000,
		Method:       x.method,
		Path:         x.uri,
		Host:         x.host,
		Status:       x.status,
		RequestSize:  reqSize,
		ResponseSize: respSize,
		Error:        x.errText,
	}
}

// Detail is one exchange in full, as the inspector page shows it.
type Detail struct {
	Summary
	Proto      string  `json:"proto"`
	RemoteAddr string  `json:"remote_addr"`
	Request    Message `json:"request"`
	Response   Message `json:"response"`
}

// Message is the headers and body of one side of an exchange.
type Message struct {
	Headers http.Header `json:"headers"`
	Body    Body        `json:"body"`
}

// Body is a recorded body, ready to show.
type Body struct {
	// Size is the whole body's length; Captured is how much of it was kept.
	Size      int64 `json:"size"`
	Captured  int   `json:"captured"`
	Truncated bool  `json:"truncated"`
	// Kind is how Display shows it: "empty", "json" (pretty-printed),
	// "text", or "binary" (a hex dump).
	Kind        string `json:"kind"`
	ContentType string `json:"content_type,omitempty"`
	// Decoded names the Content-Encoding that was undone for Display.
	Decoded string `json:"decoded,omitempty"`
	Display string `json:"display"`
	// Base64 is the captured bytes as they passed (still encoded), for
	// replaying or saving.
	Base64 string `json:"base64"`
}

// Detail returns exchange id in full, or false when it is not kept.
func (s *Store) Detail(id uint64) (Detail, bool) {
	x := s.get(id)
	if x == nil {
		return Detail{}, false
	}
	s.mu.Lock()
	d := Detail{Summary: x.summaryLocked(), Proto: x.proto, RemoteAddr: x.remoteAddr}
	respHeader := x.respHeader
	s.mu.Unlock()

	x.mu.Lock()
	req := append([]byte(nil), x.reqBody.buf...)
	reqSize := x.reqBody.size
	resp := append([]byte(nil), x.respBody.buf...)
	respSize := x.respBody.size
	x.mu.Unlock()

	d.Request = Message{Headers: x.reqHeader, Body: RenderBody(req, reqSize, x.reqHeader, s.cfg.BodyLimit)}
	if respHeader == nil {
		respHeader = http.Header{}
	}
	d.Response = Message{Headers: respHeader, Body: RenderBody(resp, respSize, respHeader, s.cfg.BodyLimit)}
	return d, true
}

// RenderBody prepares captured, the first bytes of a body of size bytes
// with headers h, for display: JSON pretty-printed, text as is, anything
// else as a hex dump. A complete gzip body is shown decoded,
// at most limit bytes of it (a small body can inflate to a huge one).
func RenderBody(captured []byte, size int64, h http.Header, limit ByteSize) Body {
	b := Body{
		Size:        size,
		Captured:    len(captured),
		Truncated:   size > int64(len(captured)),
		ContentType: h.Get("Content-Type"),
		Base64:      base64.StdEncoding.EncodeToString(captured),
	}
	if len(captured) == 0 {
		b.Kind = "empty"
		return b
	}
	data := captured
	if enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc != "" && enc != "identity" && !b.Truncated {
		if dec, ok := decode(enc, captured, int64(limit)); ok {
			data, b.Decoded = dec, enc
		}
	}
	mt, _, _ := mime.ParseMediaType(b.ContentType)
	if (isJSONType(mt) || (mt == "" || mt == "text/plain") && looksJSON(data)) && indentedSize(data) <= maxIndented(len(data)) {
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") == nil {
			b.Kind, b.Display = "json", buf.String()
			return b
		}
	}
	if isText(data) {
		b.Kind, b.Display = "text", string(data)
		return b
	}
	b.Kind, b.Display = "binary", hex.Dump(data)
	return b
}

func isJSONType(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func looksJSON(p []byte) bool {
	p = bytes.TrimSpace(p)
	return len(p) > 0 && (p[0] == '{' || p[0] == '[') && json.Valid(p)
}

// isText reports whether p reads as text: valid UTF-8 (a multi-byte rune
// cut at the end by truncation is allowed) without control characters
// other than whitespace.
func isText(p []byte) bool {
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			if len(p)-i < utf8.UTFMax && !utf8.FullRune(p[i:]) {
				return true
			}
			return false
		}
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' && r != '\f' || r == 0x7f {
			return false
		}
		i += n
	}
	return true
}

func decode(enc string, p []byte, limit int64) ([]byte, bool) {
	var r io.Reader
	switch enc {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, false
		}
		r = zr
	default:
		return nil, false
	}
	out, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil && len(out) == 0 {
		return nil, false
	}
	return out, true
}

// ByteSize is a size in bytes that reads and prints with binary units:
// "65536", "64KiB", "64k", "1MiB", "1m".
type ByteSize int64

func (b ByteSize) String() string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return strconv.FormatInt(int64(b)>>20, 10) + "MiB"
	case b >= 1<<10 && b%(1<<10) == 0:
		return strconv.FormatInt(int64(b)>>10, 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set parses s (pflag.Value).
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Type names the flag's value type (pflag.Value).
func (b *ByteSize) Type() string { return "size" }

// UnmarshalText reads the TOML form, e.g. body_limit = "256KiB".
func (b *ByteSize) UnmarshalText(p []byte) error { return b.Set(string(p)) }

// MarshalText writes the form UnmarshalText reads.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// ParseByteSize reads a byte count with an optional unit (B, K/KB/KiB,
// M/MB/MiB; all binary).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB or MiB", s)
	}
	return ByteSize(n * mult), nil
}
