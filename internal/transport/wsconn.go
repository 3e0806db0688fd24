package transport

import (
	"encoding/binary"
	"net"
)

// yamux frame header layout (hashicorp/yamux spec.md): version(1) type(1)
// flags(2) stream id(4) length(4). Type 0 is Data.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

// coalescingConn joins each yamux data header with the body that follows it,
// so that one yamux frame travels as one WebSocket message.
//
// yamux's send loop writes a frame's 12-byte header and its body with two
// Write calls. On a plain TCP socket that costs a syscall; on a WebSocket it
// also costs a whole message (frame header, mask, flush) for 12 bytes.
// Coalescing raised small-request throughput over 64 streams by about 45%
// in our measurements (docs/design.md). Only the yamux send loop writes to
// this conn, one frame at a time, so no lock is needed.
type coalescingConn struct {
	net.Conn
	pending bool
	buf     []byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.pending {
		c.pending = false
		c.buf = append(c.buf[:yamuxHeaderSize], p...)
		if _, err := c.Conn.Write(c.buf); err != nil {
			return 0, err
		}
		// Do not keep a large body's buffer alive for an idle session.
		if cap(c.buf) > 64<<10 {
			c.buf = nil
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		c.buf = append(c.buf[:0], p...)
		c.pending = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}
