package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/porthole/porthole/internal/transport"
)

// harness is one session between a server and a client in this process,
// over loopback TCP, optionally through a counting relay.
type harness struct {
	srv, cli *transport.Session
	relay    *relay
	hs       *http.Server
	ln       net.Listener
}

func newHarness(m mode, linkMbit float64, withRelay bool) (*harness, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &harness{ln: ln}
	got := make(chan *transport.Session, 1)
	h.hs = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.accept(w, r)
		if err != nil {
			return
		}
		got <- s
		<-s.CloseChan()
	})}
	go h.hs.Serve(ln)
	addr := ln.Addr().String()
	if withRelay {
		h.relay, err = newRelay(addr, linkMbit)
		if err != nil {
			h.close()
			return nil, err
		}
		addr = h.relay.ln.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.cli, err = m.dial(ctx, "ws://"+addr+"/")
	if err != nil {
		h.close()
		return nil, err
	}
	select {
	case h.srv = <-got:
	case <-ctx.Done():
		h.close()
		return nil, errors.New("server side never came up")
	}
	return h, nil
}

func (h *harness) close() {
	if h.cli != nil {
		h.cli.Close()
	}
	if h.srv != nil {
		h.srv.Close()
	}
	if h.relay != nil {
		h.relay.close()
	}
	h.hs.Close()
}

// pair opens a stream from the server, as porthole does for each visitor
// connection, and returns both ends.
func (h *harness) pair() (srv, cli net.Conn, err error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := h.cli.AcceptStream()
		ch <- res{c, err}
	}()
	srv, err = h.srv.OpenStream()
	if err != nil {
		return nil, nil, err
	}
	// yamux announces a stream with its first frame.
	if _, err := srv.Write([]byte{0}); err != nil {
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		return nil, nil, r.err
	}
	var b [1]byte
	if _, err := io.ReadFull(r.c, b[:]); err != nil {
		return nil, nil, err
	}
	return srv, r.c, nil
}

// bulk sends payload one way on a fresh session, in 32 KiB writes as a
// byte pipe does, and times it until the receiver has read it all.
func bulk(m mode, linkMbit float64, payload []byte, toServer bool) (bulkResult, error) {
	h, err := newHarness(m, linkMbit, true)
	if err != nil {
		return bulkResult{}, err
	}
	defer h.close()
	srv, cli, err := h.pair()
	if err != nil {
		return bulkResult{}, err
	}
	src, dst := srv, cli
	if toServer {
		src, dst = cli, srv
	}
	w0 := h.relay.bytes()
	c0 := cpuTime()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(payload); off += 32 << 10 {
			if _, err := src.Write(payload[off:min(off+32<<10, len(payload))]); err != nil {
				errc <- err
				return
			}
		}
		errc <- src.Close() // yamux Close is a half-close: FIN
	}()
	n, err := io.Copy(io.Discard, dst)
	elapsed := time.Since(start)
	if err != nil {
		return bulkResult{}, err
	}
	if err := <-errc; err != nil {
		return bulkResult{}, err
	}
	if n != int64(len(payload)) {
		return bulkResult{}, fmt.Errorf("received %d of %d bytes", n, len(payload))
	}
	return bulkResult{payload: n, wire: h.relay.bytes() - w0, elapsed: elapsed, cpu: cpuTime() - c0}, nil
}

type interactiveResult struct {
	p50, p99 time.Duration
	wire     int64
}

// interactive sends small JSON messages one at a time and waits for each
// echo: the pattern of a terminal or a chatty API, where a compressor that
// held bytes back would stall the conversation.
func interactive(m mode, rounds int) (interactiveResult, error) {
	h, err := newHarness(m, 0, true)
	if err != nil {
		return interactiveResult{}, err
	}
	defer h.close()
	srv, cli, err := h.pair()
	if err != nil {
		return interactiveResult{}, err
	}
	go io.Copy(cli, cli) // echo
	msgs := genMessages(rounds, 300)
	buf := make([]byte, 300)
	lat := make([]time.Duration, 0, rounds)
	w0 := h.relay.bytes()
	for _, msg := range msgs {
		t := time.Now()
		if _, err := srv.Write(msg); err != nil {
			return interactiveResult{}, err
		}
		if _, err := io.ReadFull(srv, buf); err != nil {
			return interactiveResult{}, err
		}
		lat = append(lat, time.Since(t))
	}
	wire := h.relay.bytes() - w0
	slices.Sort(lat)
	return interactiveResult{p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], wire: wire}, nil
}

// memory opens n sessions, exchanges 64 KiB of JSON on each, and returns
// the heap and stack held per session, both ends together.
func memory(m mode, n int) (float64, error) {
	msg := genJSON(64 << 10)
	inuse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	before := inuse()
	var hs []*harness
	defer func() {
		for _, h := range hs {
			h.close()
		}
	}()
	for range n {
		h, err := newHarness(m, 0, false)
		if err != nil {
			return 0, err
		}
		hs = append(hs, h)
		srv, cli, err := h.pair()
		if err != nil {
			return 0, err
		}
		go io.Copy(cli, cli)
		if _, err := srv.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(srv, make([]byte, len(msg))); err != nil {
			return 0, err
		}
		srv.Close()
	}
	after := inuse()
	return float64(int64(after)-int64(before)) / float64(n), nil
}

// relay forwards one connection to target and counts the bytes both
// ways; with a rate it paces each direction to that many Mbit/s.
type relay struct {
	ln     net.Listener
	target string
	rate   float64 // bytes/s, 0 = unshaped
	n      atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newRelay(target string, mbit float64) (*relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, target: target, rate: mbit * 1e6 / 8}
	go r.serve()
	return r, nil
}

func (r *relay) bytes() int64 { return r.n.Load() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, up)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 16<<10)
	next := time.Now()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.n.Add(int64(n))
			if r.rate > 0 {
				// Pace on a schedule, so that a sleep that overshoots is
				// made up by the next ones; only an idle link (more than
				// 20 ms behind) restarts the schedule.
				now := time.Now()
				if now.Sub(next) > 20*time.Millisecond {
					next = now
				}
				next = next.Add(time.Duration(float64(n) / r.rate * float64(time.Second)))
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
