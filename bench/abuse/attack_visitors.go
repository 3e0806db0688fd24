package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Attacks by anonymous visitors on the public listener.

// stalledReaders: p.Conns visitors each start a download of the
// attacker's own tunnel (its app serves 1 GiB) and stop reading after
// the first 4 KiB, with a small receive buffer so that the server feels
// it at once. They hold on until the phase ends; at the end each tells
// whether the server had closed it meanwhile (the write timeout).
func stalledReaders(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	conns := make([]net.Conn, p.Conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := dialFrom(ctx, stalledAddrs[0], p.HTTP)
			if err != nil {
				c.add("dial_error", 1)
				return
			}
			conn.(*net.TCPConn).SetReadBuffer(8 << 10)
			fmt.Fprintf(conn, "GET /?size=%d HTTP/1.1\r\nHost: %s\r\n\r\n", int64(1)<<30, p.Host)
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			head := make([]byte, 4096)
			if _, err := io.ReadFull(conn, head); err != nil {
				c.add("no_answer", 1)
				conn.Close()
				return
			}
			if status := statusOf(head); status != 200 {
				c.add(fmt.Sprintf("status_%d", status), 1)
				conn.Close()
				return
			}
			c.add("stalled", 1)
			conns[i] = conn
		}()
	}
	wg.Wait()
	<-ctx.Done()
	for _, conn := range conns {
		if conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			if closedByPeer(conn) {
				c.add("cut", 1)
			} else {
				c.add("held", 1)
			}
		}()
	}
	wg.Wait()
	return nil
}

// statusOf reads the status code of an HTTP/1.1 response's first line.
func statusOf(b []byte) int {
	var code int
	fmt.Sscanf(string(b), "HTTP/1.1 %d", &code)
	return code
}

// closedByPeer reads what the kernel holds for conn and reports whether
// the peer had closed it (EOF or reset after the bytes it had sent)
// rather than just gone quiet or kept sending.
func closedByPeer(conn net.Conn) bool {
	buf := make([]byte, 64<<10)
	var n int
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && n < 1<<20; {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		m, err := conn.Read(buf)
		n += m
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		if err != nil {
			return true
		}
	}
	return false // still sending: the server had not given up on it
}

// slowloris: p.Conns connections, spread over a few addresses, each
// sending a request's headers one byte a second and never finishing
// them. A connection the server closes is opened again at once.
func slowloris(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	var open atomic.Int64
	for i := range p.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := slowlorisAddrs[i%len(slowlorisAddrs)]
			// Start spread over the first second, as a trickle would.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(p.Conns))
			for ctx.Err() == nil {
				slowConn(ctx, src, p, c, &open)
			}
		}()
	}
	wg.Wait()
	return nil
}

func slowConn(ctx context.Context, src netip.Addr, p params, c *counters, open *atomic.Int64) {
	conn, err := dialFrom(ctx, src, p.HTTP)
	if err != nil {
		if ctx.Err() == nil {
			c.add("dial_error", 1)
			sleepCtx(ctx, time.Second)
		}
		return
	}
	defer conn.Close()
	c.add("opened", 1)
	c.peak("open_peak", open.Add(1))
	defer open.Add(-1)
	start := time.Now()
	// Whatever the server answers, or its closing, ends the connection.
	answer := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := io.ReadAtLeast(conn, b, 12)
		answer <- string(b[:n])
	}()
	prefix := fmt.Sprintf("GET / HTTP/1.1\r\nHost: slow.%s\r\nX-Slow: ", p.Domain)
	msg := []byte(prefix + strings.Repeat("a", 1<<20))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(msg[i : i+1]); err != nil {
			if ctx.Err() == nil {
				c.since("closed", start)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case a := <-answer:
			switch code := statusOf([]byte(a)); code {
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				c.add(fmt.Sprintf("status_%d", code), 1)
				sleepCtx(ctx, time.Second) // refused: as a client honouring Retry-After
			default:
				// Closed, with a last answer (net/http sends 400 for
				// headers cut off by its deadline) or without.
				c.since("closed", start)
				if code != 0 {
					c.add(fmt.Sprintf("closed_with_%d", code), 1)
				}
			}
			return
		case <-tick.C:
		}
	}
}

// idleConns: p.Conns connections spread over idleAddrs, each sending one
// request (for a host no tunnel holds: a 404, cheap for both sides) and
// then staying idle on keep-alive. A connection the server refuses or
// closes is tried again after a second, so the pressure stays.
func idleConns(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	var open atomic.Int64
	sem := make(chan struct{}, 64) // connections being set up at once
	for i := range p.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := idleAddrs[i%len(idleAddrs)]
			for first := true; ctx.Err() == nil; first = false {
				if !first {
					sleepCtx(ctx, time.Second)
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				conn, br, err := idleConn(ctx, src, p, c)
				<-sem
				if err != nil {
					continue
				}
				c.peak("open_peak", open.Add(1))
				// Block until the server closes it (or the phase ends).
				b := make([]byte, 1)
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				_, _ = br.Read(b)
				stop()
				open.Add(-1)
				conn.Close()
				if ctx.Err() == nil {
					c.add("closed_by_server", 1)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// idleConn opens one connection, sends its one request and reads the
// answer: an error for a refused connection (429 or 503, counted).
func idleConn(ctx context.Context, src netip.Addr, p params, c *counters) (net.Conn, *bufio.Reader, error) {
	conn, err := dialFrom(ctx, src, p.HTTP)
	if err != nil {
		if ctx.Err() == nil {
			c.add("dial_error", 1)
		}
		return nil, nil, err
	}
	c.add("attempts", 1)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: idle.%s\r\n\r\n", p.Domain)
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		if ctx.Err() == nil {
			c.add("no_answer", 1)
		}
		return nil, nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable || resp.Close {
		c.add(fmt.Sprintf("refused_%d", resp.StatusCode), 1)
		conn.Close()
		return nil, nil, errors.New("refused")
	}
	c.add("accepted", 1)
	conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// addressSpray: requests to the attacker's own tunnel, each from a
// source address of its own (sprayAddr(0), sprayAddr(1), ... up to
// p.Conns, then the same ones again), on a connection of its own, from
// p.Workers workers as fast as the server answers.
func addressSpray(ctx context.Context, p params, c *counters) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	req := []byte(fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", p.Host))
	for range p.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				c.peak("addresses", int64(min(i+1, p.Conns)))
				conn, err := dialFrom(ctx, sprayAddr(i%p.Conns), p.HTTP)
				if err != nil {
					if ctx.Err() == nil {
						c.add("dial_error", 1)
						sleepCtx(ctx, 100*time.Millisecond)
					}
					continue
				}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Write(req)
				n := 0
				if err == nil {
					n, err = io.ReadAtLeast(conn, buf, 12)
				}
				conn.Close()
				switch {
				case n >= 12:
					c.add(fmt.Sprintf("status_%d", statusOf(buf[:n])), 1)
				case ctx.Err() == nil:
					c.add("no_answer", 1)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
