package yamux

import (
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The tests in this file speak raw frames to a session, as a hostile peer
// would, and check what the session does with them.

func rawFrame(typ uint8, flags uint16, id, length uint32) []byte {
	b := make([]byte, headerSize)
	b[0] = protoVersion
	b[1] = typ
	binary.BigEndian.PutUint16(b[2:4], flags)
	binary.BigEndian.PutUint32(b[4:8], id)
	binary.BigEndian.PutUint32(b[8:12], length)
	return b
}

// rawServer starts a server session on one end of a pipe and returns the
// other end for the test to write frames to. The pipe does not buffer:
// what the session writes blocks until the test reads it.
func rawServer(t *testing.T, g *GuardConfig) (*Session, io.ReadWriteCloser) {
	t.Helper()
	peer, conn := testConnPipe(t)
	conf := testConf()
	conf.Guard = g
	s, err := Server(conn, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer
}

// floodUntil writes frame to w until the session closes or n frames went.
func floodUntil(s *Session, w io.Writer, frame []byte, n int) int {
	batch := make([]byte, 0, 100*len(frame))
	for range 100 {
		batch = append(batch, frame...)
	}
	sent := 0
	for sent < n && !s.IsClosed() {
		if _, err := w.Write(batch); err != nil {
			break
		}
		sent += 100
	}
	return sent
}

// TestPingFloodGoroutines: a peer that sends pings without reading the
// replies. Upstream yamux started a goroutine per ping, each blocked on
// the reply it could not send; here at most one reply is pending.
func TestPingFloodGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, peer := rawServer(t, nil) // no guard: the bound holds without one
	done := make(chan int)
	go func() { done <- floodUntil(s, peer, rawFrame(typePing, flagSYN, 0, 7), 20000) }()
	var peak int
	for {
		select {
		case n := <-done:
			if n < 20000 {
				t.Fatalf("only %d pings went before the session stopped reading", n)
			}
			if peak > before+20 {
				t.Fatalf("goroutines went from %d to %d during a ping flood", before, peak)
			}
			return
		case <-time.After(time.Millisecond):
			peak = max(peak, runtime.NumGoroutine())
		}
	}
}

// TestGuardCutsOffFloods sends each kind of frame the guard bounds in a
// loop and checks that the session is cut off, naming the kind.
func TestGuardCutsOffFloods(t *testing.T) {
	cases := []struct {
		name  string
		kind  string
		frame []byte
		setup func(t *testing.T, s *Session, peer io.ReadWriteCloser)
	}{
		{name: "pings", kind: FloodPing, frame: rawFrame(typePing, flagSYN, 0, 1)},
		{name: "ping replies", kind: FloodControl, frame: rawFrame(typePing, flagACK, 0, 1)},
		{name: "go-aways", kind: FloodControl, frame: rawFrame(typeGoAway, 0, 0, goAwayNormal)},
		{name: "empty data frames", kind: FloodControl, frame: rawFrame(typeData, 0, 1, 0), setup: openStream1},
		{name: "window updates", kind: FloodControl, frame: rawFrame(typeWindowUpdate, 0, 1, 1), setup: openStream1},
		{name: "frames for unknown streams", kind: FloodStray, frame: rawFrame(typeWindowUpdate, flagACK, 999, 0)},
		{name: "stream opens", kind: FloodOpen, setup: func(t *testing.T, s *Session, peer io.ReadWriteCloser) {
			go io.Copy(io.Discard, peer)
			for id := uint32(1); id < 2000 && !s.IsClosed(); id += 2 {
				if _, err := peer.Write(rawFrame(typeWindowUpdate, flagSYN, id, 0)); err != nil {
					break
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var kinds []string
			g := &GuardConfig{
				PingsPerSecond: 5, PingBurst: 20,
				ControlPerSecond: 100, ControlBurst: 1000,
				StrayPerSecond: 100, StrayBurst: 500,
				MaxInboundStreams: 4, RefusedPerSecond: 1, RefusedBurst: 10,
				OnFlood: func(kind string) { mu.Lock(); kinds = append(kinds, kind); mu.Unlock() },
			}
			s, peer := rawServer(t, g)
			if c.setup != nil {
				c.setup(t, s, peer)
			}
			if c.frame != nil {
				go io.Copy(io.Discard, peer)
				floodUntil(s, peer, c.frame, 1_000_000)
			}
			select {
			case <-s.CloseChan():
			case <-time.After(10 * time.Second):
				t.Fatal("the session still runs after the flood")
			}
			var fe *FloodError
			if !errors.As(s.shutdownErr, &fe) || fe.Kind != c.kind {
				t.Fatalf("session ended with %v, want a %q flood error", s.shutdownErr, c.kind)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(kinds) != 1 || kinds[0] != c.kind {
				t.Fatalf("OnFlood got %v, want [%s]", kinds, c.kind)
			}
		})
	}
}

// openStream1 opens stream 1 from the peer, so that the flood is of
// frames for a real stream.
func openStream1(t *testing.T, s *Session, peer io.ReadWriteCloser) {
	peer.Write(rawFrame(typeWindowUpdate, flagSYN, 1, 0))
	go io.Copy(io.Discard, peer)
	if _, err := s.AcceptStream(); err != nil {
		t.Fatal(err)
	}
}

// TestInboundStreamsRefused: streams past MaxInboundStreams are reset at
// once and keep no state; the ones within it work.
func TestInboundStreamsRefused(t *testing.T) {
	s, peer := rawServer(t, &GuardConfig{MaxInboundStreams: 2, RefusedPerSecond: 1, RefusedBurst: 100})
	resets := make(chan uint32, 10)
	go func() {
		hdr := header(make([]byte, headerSize))
		for {
			if _, err := io.ReadFull(peer, hdr); err != nil {
				return
			}
			if hdr.MsgType() == typeWindowUpdate && hdr.Flags()&flagRST != 0 {
				resets <- hdr.StreamID()
			}
			if hdr.MsgType() == typeData {
				io.CopyN(io.Discard, peer, int64(hdr.Length()))
			}
		}
	}()
	for _, id := range []uint32{1, 3, 5, 7} {
		// Each open carries data, which a refused stream must not buffer.
		peer.Write(append(rawFrame(typeData, flagSYN, id, 5), "hello"...))
	}
	for _, want := range []uint32{5, 7} {
		select {
		case got := <-resets:
			if got != want {
				t.Fatalf("reset stream %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d was not reset", want)
		}
	}
	if n := s.NumStreams(); n != 2 {
		t.Fatalf("%d streams kept, want 2", n)
	}
	for range 2 {
		st, err := s.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("accepted stream read %q, %v", buf, err)
		}
	}
}
