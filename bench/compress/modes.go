package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/coder/websocket"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/porthole/porthole/internal/transport"
)

// mode is one way of carrying a session. "off" and "zstd" are porthole's
// own sessions (transport.Dial and transport.Accept, without and with
// --compress); the others are the alternatives weighed in
// docs/compression.md, built from the same WebSocket and multiplexer with
// a different compression.
type mode struct {
	name   string
	accept func(w http.ResponseWriter, r *http.Request) (*transport.Session, error)
	dial   func(ctx context.Context, url string) (*transport.Session, error)
}

var allModes = []mode{
	porthole("off", false),
	porthole("zstd", true),
	wsMode("deflate", websocket.CompressionContextTakeover, nil),
	wsMode("deflate-nct", websocket.CompressionNoContextTakeover, nil),
	wsMode("s2", websocket.CompressionDisabled, s2Wrap),
	wsMode("zstd-256k", websocket.CompressionDisabled, zstdWrap(1<<18)),
}

func modeByName(n string) (mode, error) {
	for _, m := range allModes {
		if m.name == n {
			return m, nil
		}
	}
	return mode{}, fmt.Errorf("unknown mode %q", n)
}

// porthole is a session exactly as the server and client set it up.
func porthole(name string, compress bool) mode {
	return mode{
		name: name,
		accept: func(w http.ResponseWriter, r *http.Request) (*transport.Session, error) {
			return transport.Accept(w, r, transport.Options{AllowCompression: true})
		},
		dial: func(ctx context.Context, url string) (*transport.Session, error) {
			return transport.Dial(ctx, url, transport.DialOptions{Compress: compress})
		},
	}
}

// wsMode is a session over a WebSocket with the given permessage-deflate
// mode, and wrap (when set) below the multiplexer.
func wsMode(name string, ws websocket.CompressionMode, wrap func(net.Conn) net.Conn) mode {
	netConn := func(c *websocket.Conn) net.Conn {
		nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		if wrap != nil {
			return wrap(nc)
		}
		return nc
	}
	return mode{
		name: name,
		accept: func(w http.ResponseWriter, r *http.Request) (*transport.Session, error) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: ws})
			if err != nil {
				return nil, err
			}
			return transport.NewServerSession(netConn(c), transport.Options{})
		},
		dial: func(ctx context.Context, url string) (*transport.Session, error) {
			c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: ws})
			if err != nil {
				return nil, err
			}
			return transport.NewClientSession(netConn(c), transport.Options{})
		},
	}
}

// flushConn compresses each Write as a unit that the peer can decode at
// once (a flushed block), sent as one write on the conn below.
type flushConn struct {
	net.Conn
	buf   bytes.Buffer
	w     interface{ Write([]byte) (int, error) }
	flush func() error
	r     interface{ Read([]byte) (int, error) }
}

func (c *flushConn) Write(p []byte) (int, error) {
	c.buf.Reset()
	if _, err := c.w.Write(p); err != nil {
		return 0, err
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	if _, err := c.Conn.Write(c.buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *flushConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func zstdWrap(window int) func(net.Conn) net.Conn {
	return func(nc net.Conn) net.Conn {
		c := &flushConn{Conn: nc}
		enc, _ := zstd.NewWriter(&c.buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(window), zstd.WithLowerEncoderMem(true))
		dec, _ := zstd.NewReader(nc, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(uint64(window)))
		c.w, c.flush, c.r = enc, enc.Flush, dec
		return c
	}
}

func s2Wrap(nc net.Conn) net.Conn {
	c := &flushConn{Conn: nc}
	enc := s2.NewWriter(&c.buf, s2.WriterConcurrency(1), s2.WriterBlockSize(64<<10))
	c.w, c.flush, c.r = enc, enc.Flush, s2.NewReader(nc)
	return c
}
