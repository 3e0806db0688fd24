package yamux

import (
	"io"
	"sync"
)

// chunkSize is the unit a stream's receive buffer grows and shrinks by.
const chunkSize = 16 << 10

var chunks = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// recvBuf holds a stream's received, unread bytes in pooled fixed-size
// chunks. Upstream yamux used a bytes.Buffer, whose capacity doubles as it
// grows and stays at its high-water mark: a stream that once buffered
// 4 MiB kept up to 8 MiB until it was garbage. Here memory follows the
// bytes actually waiting, within one chunk, and drained chunks go back to
// the pool for other streams.
type recvBuf struct {
	bufs []*[chunkSize]byte
	// head is the read offset in bufs[0]; tail the write offset in the
	// last chunk.
	head, tail int
	n          int
}

// Len returns the number of unread bytes.
func (b *recvBuf) Len() int { return b.n }

// readFrom appends exactly n bytes read from r.
func (b *recvBuf) readFrom(r io.Reader, n int) (int, error) {
	done := 0
	for done < n {
		if len(b.bufs) == 0 || b.tail == chunkSize {
			b.bufs = append(b.bufs, chunks.Get().(*[chunkSize]byte))
			b.tail = 0
		}
		last := b.bufs[len(b.bufs)-1]
		m := min(n-done, chunkSize-b.tail)
		k, err := io.ReadFull(r, last[b.tail:b.tail+m])
		b.tail += k
		b.n += k
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Read copies unread bytes into p.
func (b *recvBuf) Read(p []byte) int {
	done := 0
	for done < len(p) && b.n > 0 {
		first := b.bufs[0]
		end := chunkSize
		if len(b.bufs) == 1 {
			end = b.tail
		}
		k := copy(p[done:], first[b.head:end])
		b.head += k
		b.n -= k
		done += k
		if b.head == end {
			b.popFirst()
		}
	}
	return done
}

func (b *recvBuf) popFirst() {
	chunks.Put(b.bufs[0])
	b.bufs[0] = nil
	b.bufs = b.bufs[1:]
	b.head = 0
	if len(b.bufs) == 0 {
		b.bufs, b.tail = nil, 0
	}
}

// reset drops every unread byte and returns how many there were.
func (b *recvBuf) reset() int {
	n := b.n
	for len(b.bufs) > 0 {
		b.popFirst()
	}
	b.n = 0
	return n
}
