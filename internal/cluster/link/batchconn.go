package link

import (
	"net"
	"sync"
)

// maxBatch bounds what a batchConn holds before its writers wait.
const maxBatch = 256 << 10

// batchConn sits between a session and its TLS connection and writes on
// its own goroutine: frames the multiplexer sends while a write is in
// progress go out together in the next one. yamux writes every frame
// header and body separately, and each write to a tls.Conn is a record
// and a system call; with many small forwarded requests at once the
// system calls were a third of the CPU (BenchmarkHop, profiled). When the
// link is idle a frame goes out at once, with one goroutine hand-off.
type batchConn struct {
	net.Conn
	mu     sync.Mutex
	room   sync.Cond // signalled when buf drains or the conn fails
	buf    []byte
	spare  []byte
	err    error
	kick   chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, kick: make(chan struct{}, 1), closed: make(chan struct{})}
	b.room.L = &b.mu
	go b.loop()
	return b
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.buf) >= maxBatch && b.err == nil {
		b.room.Wait()
	}
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *batchConn) loop() {
	for {
		select {
		case <-b.kick:
		case <-b.closed:
			return
		}
		for {
			b.mu.Lock()
			if len(b.buf) == 0 {
				b.mu.Unlock()
				break
			}
			out := b.buf
			b.buf = b.spare[:0]
			b.room.Broadcast()
			b.mu.Unlock()
			_, err := b.Conn.Write(out)
			if cap(out) > 2*maxBatch {
				out = nil // not kept after a burst of large frames
			}
			b.spare = out
			if err != nil {
				b.fail(err)
				return
			}
		}
	}
}

func (b *batchConn) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.room.Broadcast()
	b.mu.Unlock()
	b.Conn.Close()
}

func (b *batchConn) Close() error {
	b.once.Do(func() { close(b.closed) })
	b.fail(net.ErrClosed)
	return nil
}
