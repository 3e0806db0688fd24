package limits

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// withClock makes the shapers read clk for the duration of the test.
func withClock(t *testing.T, clk *fakeClock) {
	t.Helper()
	old := timeNow
	timeNow = clk.Now
	t.Cleanup(func() { timeNow = old })
}

func TestBandwidthOff(t *testing.T) {
	if NewBandwidth(0) != nil || NewBandwidth(-5) != nil {
		t.Fatal("a zero or negative rate makes a shaper")
	}
	var b *Bandwidth
	if err := b.Wait(context.Background(), 1<<30); err != nil || b.Waited() != 0 {
		t.Fatal("a nil shaper waits")
	}
}

func TestBandwidthBucket(t *testing.T) {
	if b := NewBandwidth(1 << 10); b.chunk != 16<<10 {
		t.Fatalf("bucket %d at 1 KiB/s, want the 16 KiB floor", b.chunk)
	}
	if b := NewBandwidth(10 << 20); b.chunk != 1<<20 {
		t.Fatalf("bucket %d at 10 MiB/s, want a tenth of a second's worth", b.chunk)
	}
}

// TestBandwidthWait drives a shaper with a frozen clock: what the bucket
// holds passes at once; beyond it each chunk is delayed by its size over
// the rate (a real sleep of 100ms here), and counted.
func TestBandwidthWait(t *testing.T) {
	clk := newFakeClock()
	withClock(t, clk)
	b := NewBandwidth(160 << 10) // bucket 16 KiB, refills in 100ms
	var waits atomic.Int64
	b.OnWait = func() { waits.Add(1) }
	ctx := context.Background()

	if err := b.Wait(ctx, 16<<10); err != nil {
		t.Fatal(err)
	}
	if b.Waited() != 0 || waits.Load() != 0 {
		t.Fatal("a transfer within the bucket was slowed")
	}
	start := time.Now()
	if err := b.Wait(ctx, 16<<10); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("an empty bucket let 16 KiB through after %v; want a wait of 100ms", el)
	}
	if b.Waited() != 1 || waits.Load() != 1 {
		t.Fatalf("Waited = %d, OnWait called %d times; want 1", b.Waited(), waits.Load())
	}
	// A second later (on the shaper's clock) the bucket is full again.
	clk.Advance(time.Second)
	if err := b.Wait(ctx, 16<<10); err != nil {
		t.Fatal(err)
	}
	if b.Waited() != 1 {
		t.Fatal("slowed after the bucket refilled")
	}
}

// TestBandwidthCancel: a cancelled wait returns at once with the context's
// error and gives its reservation back, so an abandoned transfer does not
// slow the user's others.
func TestBandwidthCancel(t *testing.T) {
	clk := newFakeClock()
	withClock(t, clk)
	b := NewBandwidth(16 << 10) // bucket 16 KiB, refills in a second
	if err := b.Wait(context.Background(), 16<<10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := b.Wait(ctx, 16<<10) // would wait a second
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("a cancelled wait returned after %v", el)
	}
	// The cancelled reservation was returned: after one second of refill
	// (on the shaper's clock) a full bucket passes without waiting.
	clk.Advance(time.Second)
	before := b.Waited()
	if err := b.Wait(context.Background(), 16<<10); err != nil {
		t.Fatal(err)
	}
	if b.Waited() != before {
		t.Fatal("the cancelled transfer's reservation still holds the bucket")
	}
}

// TestShapedConn sends bytes through a shaped connection over TCP
// loopback: they arrive intact, and no faster than the rate allows (a
// lower bound only: shaping must slow the transfer).
func TestShapedConn(t *testing.T) {
	for _, dir := range []string{"write", "read"} {
		t.Run(dir, func(t *testing.T) {
			a, b := tcpPair(t)
			const rate = 256 << 10 // bucket 25.6 KiB
			bw := NewBandwidth(rate)
			sc := &ShapedConn{Conn: a, Ctx: context.Background()}
			if dir == "write" {
				sc.Out = bw
			} else {
				sc.In = bw
			}
			payload := make([]byte, 128<<10)
			rand.Read(payload)
			start := time.Now()
			got := make(chan []byte, 1)
			var src io.Writer
			var dst io.Reader
			if dir == "write" {
				src, dst = sc, b
			} else {
				src, dst = b, sc
			}
			go func() {
				data, _ := io.ReadAll(dst)
				got <- data
			}()
			if n, err := src.Write(payload); err != nil || n != len(payload) {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if dir == "write" {
				sc.CloseWrite()
			} else {
				b.(*net.TCPConn).CloseWrite()
			}
			data := <-got
			el := time.Since(start)
			if !bytes.Equal(data, payload) {
				t.Fatalf("got %d bytes, want the %d sent, intact", len(data), len(payload))
			}
			// (128 KiB - one bucket) at 256 KiB/s: at least 400ms.
			if el < 350*time.Millisecond {
				t.Fatalf("128 KiB passed a 256 KiB/s shaper in %v", el)
			}
			if bw.Waited() == 0 {
				t.Fatal("no wait counted")
			}
		})
	}
}

// TestShapedConnCancelled: a write blocked on the shaper ends when its
// context does.
func TestShapedConnCancelled(t *testing.T) {
	a, b := tcpPair(t)
	go io.Copy(io.Discard, b)
	ctx, cancel := context.WithCancel(context.Background())
	sc := &ShapedConn{Conn: a, Out: NewBandwidth(16 << 10), Ctx: ctx}
	time.AfterFunc(100*time.Millisecond, cancel)
	n, err := sc.Write(make([]byte, 1<<20)) // would take a minute
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write = %d, %v; want context.Canceled", n, err)
	}
	if n >= 1<<20 {
		t.Fatalf("wrote everything (%d) despite the cancel", n)
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
