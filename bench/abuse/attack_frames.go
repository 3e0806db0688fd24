package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/coder/websocket"

	"github.com/porthole/porthole/internal/protocol"
)

// A client that speaks multiplexer frames of its own making: it opens the
// tunnel WebSocket as a porthole client would, then writes raw frames
// (internal/yamux/spec.md) in 64 KiB batches as fast as the server takes
// them, and reads whatever the server sends back. When the server cuts it
// off, it reconnects at once, as a hostile client would.

// Multiplexer frame types and flags.
const (
	frameData, frameWindowUpdate, framePing, frameGoAway = 0, 1, 2, 3
	flagSYN                                              = 1
)

func muxFrame(typ uint8, flags uint16, id, length uint32) []byte {
	b := make([]byte, 12)
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:4], flags)
	binary.BigEndian.PutUint32(b[4:8], id)
	binary.BigEndian.PutUint32(b[8:12], length)
	return b
}

// frameKind is one flood: frames to send, after an optional prefix.
type frameKind struct {
	name   string
	prefix []byte
	frame  func(i uint32) []byte
}

// openControl opens stream 1, as a client opens its control stream, so
// that the frames after it are about a stream the server knows.
var openControl = muxFrame(frameWindowUpdate, flagSYN, 1, 0)

var (
	pingKind = frameKind{name: "pings", frame: func(i uint32) []byte { return muxFrame(framePing, flagSYN, 0, i) }}
	// floodKinds are the frame-floods attack's kinds, one per session in
	// turn.
	floodKinds = []frameKind{
		{name: "window-updates", prefix: openControl, frame: func(uint32) []byte { return muxFrame(frameWindowUpdate, 0, 1, 1) }},
		{name: "unknown-streams", prefix: openControl, frame: func(i uint32) []byte {
			return append(muxFrame(frameData, 0, 1001+2*(i%1000), 1), 'x')
		}},
		{name: "stream-opens", frame: func(i uint32) []byte {
			return append(muxFrame(frameData, flagSYN, 2*i+3, 64<<10), make([]byte, 64<<10)...)
		}},
		{name: "go-aways", prefix: openControl, frame: func(uint32) []byte { return muxFrame(frameGoAway, 0, 0, 0) }},
	}
)

func pingFlood(ctx context.Context, p params, c *counters) error {
	return floodSessions(ctx, p, c, []frameKind{pingKind})
}

func frameFloods(ctx context.Context, p params, c *counters) error {
	return floodSessions(ctx, p, c, floodKinds)
}

// floodSessions floods one session after another, each with the next
// kind, until ctx ends.
func floodSessions(ctx context.Context, p params, c *counters, kinds []frameKind) error {
	for i := 0; ctx.Err() == nil; i++ {
		k := kinds[i%len(kinds)]
		if err := floodSession(ctx, p, c, k); err != nil && ctx.Err() == nil {
			c.add("error", 1)
			fmt.Fprintf(os.Stderr, "%s: %v\n", k.name, err)
			time.Sleep(100 * time.Millisecond) // a refused handshake: do not spin
		}
	}
	return nil
}

// rawSession opens a tunnel WebSocket as a porthole client does and
// returns it as a byte stream.
func rawSession(ctx context.Context, p params) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h := http.Header{}
	if p.Key != "" {
		h.Set("Authorization", "Bearer "+p.Key)
	}
	ws, resp, err := websocket.Dial(dctx, "ws://"+p.Tunnel, &websocket.DialOptions{
		Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: h})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: %s", resp.Status)
		}
		return nil, err
	}
	ws.SetReadLimit(-1)
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}

// floodSession opens one session and floods it with k until the server
// cuts it off or ctx ends. Counts: sessions, KIND_cut (with _ms, the time
// to the cut), KIND_frames (written, in batches the WebSocket took), and
// KIND_stalled when the server stopped reading without closing.
func floodSession(ctx context.Context, p params, c *counters, k frameKind) error {
	conn, err := rawSession(ctx, p)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.add("sessions", 1)
	start := time.Now()
	// The server's side of the session (ping replies, window updates,
	// its own control traffic) is read and dropped, so that its writes
	// never hold it up: the guard, not back-pressure, must stop us.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		buf := make([]byte, 64<<10)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	cut := func() {
		c.since(k.name+"_cut", start)
	}
	if k.prefix != nil {
		if _, err := conn.Write(k.prefix); err != nil {
			cut()
			return nil
		}
	}
	batch := make([]byte, 0, 128<<10)
	var n, sent int64 // frames in the batch, frames written
	defer func() { c.add(k.name+"_frames", sent) }()
	for i := uint32(0); ; i++ {
		batch = append(batch, k.frame(i)...)
		n++
		if len(batch) < 64<<10 {
			continue
		}
		select {
		case <-closed:
			if ctx.Err() == nil {
				cut()
			}
			return nil
		default:
		}
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Write(batch)
		batch = batch[:0]
		if err == nil {
			sent += n
		}
		n = 0
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// The server stopped reading but kept the session: not
				// cut off. Count it and start over.
				c.add(k.name+"_stalled", 1)
				return nil
			}
			cut()
			return nil
		}
	}
}
