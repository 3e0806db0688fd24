package transport

import (
	"bytes"
	"net"

	"github.com/klauspost/compress/zstd"

	"github.com/porthole/porthole/internal/protocol"
)

// Session compression (docs/compression.md).
//
// A client that wants compression offers the subprotocol SubprotocolZstd
// before protocol.Subprotocol in the WebSocket handshake; a server whose
// configuration allows compression selects it, any other server selects
// the plain one. The choice is made once per session, in the handshake,
// because it changes the bytes below the multiplexer: with
// SubprotocolZstd, the concatenated payload of the binary WebSocket
// messages in each direction is one zstd stream (RFC 8878) instead of
// plain yamux frames.
//
// The whole session shares one compressor per direction, below the
// multiplexer, rather than one per stream: a context shared by all
// streams compresses the headers that every HTTP request repeats, and the
// memory is paid once per session (about 0.75 MiB at each end: 0.55 MiB
// compressor, 0.2 MiB decompressor) instead of once per visitor
// connection. Each write of the multiplexer (one yamux
// frame) is compressed and flushed as one zstd block in one WebSocket
// message, so an interactive byte never waits in the compressor for more
// to come.

// SubprotocolZstd is the WebSocket subprotocol of a zstd-compressed
// session.
const SubprotocolZstd = protocol.Subprotocol + "+zstd"

const (
	// zstdWindow is the window this side compresses with: enough to
	// match repeated headers across requests; a 256 KiB window compressed
	// JSON no better and cost 0.6 MiB more at each end
	// (docs/compression.md).
	zstdWindow = 64 << 10
	// zstdMaxWindow is the largest window accepted from the peer. It
	// bounds the decoder's memory whatever a peer declares.
	zstdMaxWindow = 1 << 20
	// keepBuf is the largest output buffer kept between writes.
	keepBuf = 64 << 10
)

// acceptSubprotocols are the subprotocols a server selects from, in its
// order of preference.
func acceptSubprotocols(allowCompression bool) []string {
	if allowCompression {
		return []string{SubprotocolZstd, protocol.Subprotocol}
	}
	return []string{protocol.Subprotocol}
}

// dialSubprotocols are the subprotocols a client offers.
func dialSubprotocols(compress bool) []string {
	if compress {
		return []string{SubprotocolZstd, protocol.Subprotocol}
	}
	return []string{protocol.Subprotocol}
}

// negotiated wraps nc as the selected subprotocol says. ok is false for a
// subprotocol porthole does not speak.
func negotiated(nc net.Conn, subprotocol string) (c net.Conn, compressed, ok bool) {
	switch subprotocol {
	case protocol.Subprotocol:
		return nc, false, true
	case SubprotocolZstd:
		return newZstdConn(nc), true, true
	}
	return nil, false, false
}

// zstdConn compresses what is written to it and decompresses what is read
// from it. Only the multiplexer's send loop writes, and only its receive
// loop reads, so neither side needs a lock.
type zstdConn struct {
	net.Conn
	out bytes.Buffer
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newZstdConn(nc net.Conn) *zstdConn {
	c := &zstdConn{Conn: nc}
	// These options are valid constants: the constructors cannot fail.
	c.enc, _ = zstd.NewWriter(&c.out,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		// Synchronous: no goroutines, and Flush returns the block at once.
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
		// The transport (TCP, TLS) already checks integrity.
		zstd.WithEncoderCRC(false))
	c.dec, _ = zstd.NewReader(nc,
		// Synchronous: Read returns each block as soon as it has arrived.
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow))
	return c
}

// Write compresses p and sends it, flushed, as one message.
func (c *zstdConn) Write(p []byte) (int, error) {
	c.out.Reset()
	if _, err := c.enc.Write(p); err != nil {
		return 0, err
	}
	if err := c.enc.Flush(); err != nil {
		return 0, err
	}
	if c.out.Len() > 0 {
		if _, err := c.Conn.Write(c.out.Bytes()); err != nil {
			return 0, err
		}
	}
	// Do not keep a large frame's buffer alive for an idle session.
	if c.out.Cap() > keepBuf {
		c.out = bytes.Buffer{}
	}
	return len(p), nil
}

// Read returns decompressed bytes. A stream that is not valid zstd is an
// error, which ends the session.
func (c *zstdConn) Read(p []byte) (int, error) {
	return c.dec.Read(p)
}

// logCompression tells the client's log what came of its request.
func logCompression(o DialOptions, compressed bool) {
	if !o.Compress || o.Mux.Logger == nil {
		return
	}
	if compressed {
		o.Mux.Logger.Info("session compressed", "compression", "zstd")
		return
	}
	o.Mux.Logger.Warn("compression refused by the server (off in its configuration, or an older server): the session runs uncompressed")
}
