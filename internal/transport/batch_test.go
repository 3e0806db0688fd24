package transport

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"
	"testing"
)

// writeRecorder records each write the batcher makes.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

// frame builds a masked client frame with an n-byte payload.
func frame(n int) []byte {
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{0x82, 0x80 | byte(n)}
	case n < 1<<16:
		hdr = []byte{0x82, 0x80 | 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = 0x82, 0x80|127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	f := append(hdr, 1, 2, 3, 4) // masking key
	payload := make([]byte, n)
	rand.Read(payload)
	return append(f, payload...)
}

// feed writes data to b in chunks of the given size, as a 4 KiB bufio.Writer would.
func feed(t *testing.T, b *frameBatcher, data []byte, chunk int) {
	t.Helper()
	for len(data) > 0 {
		n := min(chunk, len(data))
		if k, err := b.Write(data[:n]); err != nil || k != n {
			t.Fatalf("Write = %d, %v", k, err)
		}
		data = data[n:]
	}
}

func TestFrameBatcherOneWritePerFrame(t *testing.T) {
	rec := &writeRecorder{}
	b := &frameBatcher{Conn: rec}
	b.on.Store(true)
	frames := [][]byte{frame(0), frame(5), frame(125), frame(126), frame(32 << 10), frame(40000)}
	for _, f := range frames {
		feed(t, b, f, 4096)
	}
	if len(rec.writes) != len(frames) {
		t.Fatalf("%d writes for %d frames", len(rec.writes), len(frames))
	}
	for i, w := range rec.writes {
		if !bytes.Equal(w, frames[i]) {
			t.Fatalf("write %d is not frame %d (%d bytes, want %d)", i, i, len(w), len(frames[i]))
		}
	}
	if len(b.buf) != 0 || b.left != 0 {
		t.Fatalf("state left over: %d buffered, %d left", len(b.buf), b.left)
	}
}

func TestFrameBatcherSplitHeadersAndLargeFrames(t *testing.T) {
	rec := &writeRecorder{}
	b := &frameBatcher{Conn: rec}
	b.on.Store(true)
	// A large frame goes out in pieces of at most batchLimit; small frames
	// after it still end on their own boundaries, even when their headers
	// arrive a byte at a time.
	var stream []byte
	for _, n := range []int{1 << 20, 3, 70000, 0, 1} {
		stream = append(stream, frame(n)...)
	}
	feed(t, b, stream[:1<<20+14], 4096)
	feed(t, b, stream[1<<20+14:], 1)
	got := bytes.Join(rec.writes, nil)
	if !bytes.Equal(got, stream) {
		t.Fatalf("bytes differ: wrote %d, want %d", len(got), len(stream))
	}
	for _, w := range rec.writes {
		if len(w) > batchLimit+4096 {
			t.Fatalf("a write of %d bytes: more than the batch limit", len(w))
		}
	}
	if len(b.buf) != 0 || b.left != 0 {
		t.Fatalf("state left over: %d buffered, %d left", len(b.buf), b.left)
	}
	// The last, 1-byte frame must have been written as soon as it was complete.
	if last := rec.writes[len(rec.writes)-1]; !bytes.Equal(last, stream[len(stream)-7:]) {
		t.Fatalf("last write is %d bytes, want the 1-byte frame alone (7 bytes)", len(last))
	}
}

func TestFrameBatcherPassesThroughBeforeUpgrade(t *testing.T) {
	rec := &writeRecorder{}
	b := &frameBatcher{Conn: rec}
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	feed(t, b, req, 7)
	if len(rec.writes) != 4 {
		t.Fatalf("%d writes before the upgrade, want each passed through (4)", len(rec.writes))
	}
}

// TestFrameBatcherRefusesHugeLength: a header claiming a 64-bit length
// past any real frame (near 2^63 it once overflowed int, and the parser
// looped on the negative size for ever) is an error, from that write on,
// and none of its bytes reach the connection.
func TestFrameBatcherRefusesHugeLength(t *testing.T) {
	for _, n := range []uint64{maxFrameLen + 1, 1 << 40, 1<<63 - 1, 1 << 63, 1<<64 - 1, 1<<64 - 10} {
		rec := &writeRecorder{}
		b := &frameBatcher{Conn: rec}
		b.on.Store(true)
		first := frame(5)
		feed(t, b, first, 3)
		hdr := make([]byte, 14)
		hdr[0], hdr[1] = 0x82, 0x80|127
		binary.BigEndian.PutUint64(hdr[2:10], n)
		if k, err := b.Write(hdr); err == nil || k != 0 {
			t.Fatalf("length %d: Write = %d, %v; want an error", n, k, err)
		}
		if _, err := b.Write(frame(1)); err == nil {
			t.Fatalf("length %d: a write after the bad header succeeded", n)
		}
		var out []byte
		for _, w := range rec.writes {
			out = append(out, w...)
		}
		if !bytes.Equal(out, first) {
			t.Fatalf("length %d: %d bytes reached the connection, want only the first frame's 11", n, len(out))
		}
	}
	// The largest accepted length still parses to a positive size.
	hdr := []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(hdr[2:], maxFrameLen)
	if size, ok, err := frameSize(hdr); !ok || err != nil || size != maxFrameLen+10 {
		t.Fatalf("length %d: size %d, ok %v, %v", uint64(maxFrameLen), size, ok, err)
	}
}
