package transport

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// referenceBoundaries returns the offsets in data at which WebSocket
// frames end, parsed independently of frameSize, and the offset just
// past the first complete header that declares more than maxFrameLen
// bytes (-1 if none does).
func referenceBoundaries(data []byte) (map[int]bool, int) {
	ends := map[int]bool{}
	for pos := 0; ; {
		p := data[pos:]
		if len(p) < 2 {
			return ends, -1
		}
		hdr, n := 2, uint64(p[1]&0x7f)
		switch n {
		case 126:
			if len(p) < 4 {
				return ends, -1
			}
			hdr, n = 4, uint64(binary.BigEndian.Uint16(p[2:]))
		case 127:
			if len(p) < 10 {
				return ends, -1
			}
			hdr, n = 10, binary.BigEndian.Uint64(p[2:])
			if n > maxFrameLen {
				return ends, pos + 10
			}
		}
		if p[1]&0x80 != 0 {
			hdr += 4
		}
		if uint64(len(p)) < uint64(hdr)+n {
			return ends, -1
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
// A header declaring more than maxFrameLen bytes must make the write
// that completes it fail, and every later one; none of its bytes, nor
// any after it, may reach the connection.
func FuzzFrameBatcher(f *testing.F) {
	f.Add(append(append(frame(0), frame(5)...), frame(125)...), uint16(4096))
	f.Add(append(frame(126), frame(40000)...), uint16(4096))
	f.Add(frame(100<<10), uint16(1000))
	f.Add(frame(3)[:3], uint16(1))
	f.Add([]byte{0x82, 0x7e, 0x01}, uint16(1))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 9}, uint16(2))
	f.Add([]byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(7))
	f.Add(append(frame(3), 0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf5, 1, 2, 3, 4), uint16(5))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		ends, bad := referenceBoundaries(data)
		rec := &writeRecorder{}
		b := &frameBatcher{Conn: rec}
		b.on.Store(true)
		step := int(chunk)%(8<<10) + 1
		if bad >= 0 {
			failed := false
			for pos := 0; pos < len(data); pos += step {
				_, err := b.Write(data[pos:min(pos+step, len(data))])
				if failed && err == nil {
					t.Fatal("a write after a refused header succeeded")
				}
				if err != nil {
					failed = true
				} else if pos+step >= bad {
					t.Fatalf("the write that completed a header of more than %d bytes (at %d) succeeded", uint64(maxFrameLen), bad)
				}
			}
			var out []byte
			for _, w := range rec.writes {
				out = append(out, w...)
			}
			if len(out) > bad-10 || !bytes.Equal(out, data[:len(out)]) {
				t.Fatalf("%d bytes reached the connection, past the refused header at %d or not as written", len(out), bad-10)
			}
			return
		}
		feed(t, b, data, step)
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
