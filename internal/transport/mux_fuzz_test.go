package transport

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// muxFrames turns fuzz bytes into yamux frames (spec.md): each 6 bytes
// give a type, flags, a stream id from a small set (so that frames meet
// the same streams), a length and a repeat count; data frames carry as
// many payload bytes as their length says (up to 255). Version 0, so the
// session gets past the first check and meets the frames themselves.
func muxFrames(spec []byte) []byte {
	var out []byte
	for ; len(spec) >= 6; spec = spec[6:] {
		typ := spec[0] % 4
		flags := uint16(spec[1] & 0x0f)
		id := uint32(spec[2] % 16)
		n := uint32(spec[3])
		length := n
		if typ != 0 {
			// A window delta, ping value or go-away code: small or large.
			length = n<<24 | uint32(spec[4])
		}
		hdr := make([]byte, 12)
		hdr[1] = typ
		binary.BigEndian.PutUint16(hdr[2:4], flags)
		binary.BigEndian.PutUint32(hdr[4:8], id)
		binary.BigEndian.PutUint32(hdr[8:12], length)
		for range int(spec[5]%32) + 1 {
			out = append(out, hdr...)
			if typ == 0 {
				for range n {
					out = append(out, spec[4])
				}
			}
		}
	}
	return out
}

// FuzzServerSessionFrames feeds bytes as the wire to a server-side
// session with the server's frame guard, as a hostile client would: raw,
// or shaped into frames (pings, window updates, opens, data for streams
// that exist or not, go-away), with or without an application accepting
// streams. The session must keep reading or end with an error, never
// panic, keep no more than the guard's streams, and leave no goroutine
// behind once closed.
func FuzzServerSessionFrames(f *testing.F) {
	ping := []byte{2, 1, 0, 7, 7, 31}      // SYN pings, repeated
	open := []byte{0, 1, 3, 5, 'h', 0}     // a data frame opening stream 3
	win := []byte{1, 0, 5, 0xff, 0xff, 10} // window updates for a stream that does not exist
	f.Add([]byte{}, true, true)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), false, true)
	f.Add(append(append([]byte{}, open...), ping...), true, true)
	f.Add(append(append(append([]byte{}, open...), win...), []byte{0, 4, 3, 0, 0, 0}...), true, false)
	f.Add([]byte{1, 1, 1, 0, 0, 31, 1, 1, 3, 0, 0, 31, 1, 1, 5, 0, 0, 31}, true, false) // stream opens past the bound
	f.Add([]byte{0, 8, 9, 200, 1, 31, 3, 0, 0, 0, 0, 0}, true, true)                    // RSTs with data, then go-away
	f.Add([]byte{0, 1, 1, 255, 0, 31, 0, 0, 1, 255, 0, 31}, true, false)                // data past the window
	f.Add([]byte{1, 0, 0, 0xff, 0xff, 31}, true, true)                                  // window updates for stream 0
	f.Fuzz(func(t *testing.T, data []byte, shaped, accept bool) {
		wire := data
		if shaped {
			wire = muxFrames(data)
		}
		base := runtime.NumGoroutine()
		srv, peer := net.Pipe()
		sess, err := NewServerSession(srv, Options{Guard: ServerGuard(nil), AcceptBacklog: 16, Budget: NewBudget(8 << 20)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, peer); close(done) }() // the session's replies
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			for accept {
				st, err := sess.AcceptStream()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, st); st.Close() }()
			}
		}()
		// A session that stops reading without ending would block this
		// write for ever: the deadline turns that into a failure.
		peer.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for len(wire) > 0 {
			n := min(len(wire), 4096)
			if _, err := peer.Write(wire[:n]); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the session neither reads its wire nor ends")
				}
				break // the session ended
			}
			wire = wire[n:]
		}
		if n := sess.NumStreams(); n > 4 {
			t.Fatalf("%d streams kept, the guard allows 4", n)
		}
		if g := runtime.NumGoroutine() - base; g > 40 {
			t.Fatalf("%d goroutines for one session", g)
		}
		sess.Close()
		peer.Close()
		<-done
		<-accepted
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines left after the session closed", runtime.NumGoroutine()-base)
			}
		}
	})
}
