package transport

import (
	"io"
	"net"
	"sync"
)

// closeWriter is implemented by *net.TCPConn, *tls.Conn and streams.
type closeWriter interface{ CloseWrite() error }

// Join copies bytes both ways between a and b until both directions end,
// passing each side's end of data on as a half-close, then closes both. It
// returns the bytes copied a->b and b->a.
func Join(a, b net.Conn) (ab, ba int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ab, _ = copyBuf(b, a)
		halfClose(b)
	}()
	ba, _ = copyBuf(a, b)
	halfClose(a)
	wg.Wait()
	a.Close()
	b.Close()
	return ab, ba
}

func halfClose(c net.Conn) {
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

var pipeBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	bp := pipeBufs.Get().(*[]byte)
	defer pipeBufs.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}
