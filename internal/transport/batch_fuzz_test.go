package transport

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// referenceBoundaries returns the offsets in data at which WebSocket
// frames end, parsed independently of frameSize, and whether every
// header declares a length below 2^62.
func referenceBoundaries(data []byte) (map[int]bool, bool) {
	ends := map[int]bool{}
	for pos := 0; ; {
		p := data[pos:]
		if len(p) < 2 {
			return ends, true
		}
		hdr, n := 2, uint64(p[1]&0x7f)
		switch n {
		case 126:
			if len(p) < 4 {
				return ends, true
			}
			hdr, n = 4, uint64(binary.BigEndian.Uint16(p[2:]))
		case 127:
			if len(p) < 10 {
				return ends, true
			}
			hdr, n = 10, binary.BigEndian.Uint64(p[2:])
			if n>>62 != 0 {
				return ends, false
			}
		}
		if p[1]&0x80 != 0 {
			hdr += 4
		}
		if uint64(len(p)) < uint64(hdr)+n {
			return ends, true
		}
		pos += hdr + int(n)
		ends[pos] = true
	}
}

// FuzzFrameBatcher feeds a byte stream, in writes of a fuzzed size, to
// the frame batcher that sits under a client's WebSocket. Every byte must
// reach the connection once, in order (or wait in the buffer for the rest
// of its frame), and each write to the connection must end on a frame
// boundary or carry at least batchLimit bytes of one large frame.
//
// Headers declaring 2^62 bytes or more are left out: the batcher only
// sees frames our own WebSocket library writes, never near that size,
// and frameSize's int arithmetic overflows for lengths within 14 of
// 2^63 (RFC 6455 allows up to 2^63-1), giving a size <= 0 on which scan
// would loop without end.
func FuzzFrameBatcher(f *testing.F) {
	f.Add(append(append(frame(0), frame(5)...), frame(125)...), uint16(4096))
	f.Add(append(frame(126), frame(40000)...), uint16(4096))
	f.Add(frame(100<<10), uint16(1000))
	f.Add(frame(3)[:3], uint16(1))
	f.Add([]byte{0x82, 0x7e, 0x01}, uint16(1))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 9}, uint16(2))
	f.Add([]byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(7))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		ends, allowed := referenceBoundaries(data)
		if !allowed {
			return
		}
		rec := &writeRecorder{}
		b := &frameBatcher{Conn: rec}
		b.on.Store(true)
		feed(t, b, data, int(chunk)%(8<<10)+1)
		var out []byte
		for _, w := range rec.writes {
			out = append(out, w...)
			if !ends[len(out)] && len(w) < batchLimit {
				t.Fatalf("a %d-byte write ends at %d, inside a frame", len(w), len(out))
			}
		}
		if !bytes.Equal(append(out, b.buf...), data) {
			t.Fatalf("wrote %d bytes and holds %d; they are not the %d written to it", len(out), len(b.buf), len(data))
		}
		if len(b.buf) > 0 && ends[len(data)] {
			t.Fatalf("holds %d bytes after a complete frame", len(b.buf))
		}
	})
}
