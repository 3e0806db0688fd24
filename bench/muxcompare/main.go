// Command muxcompare sets porthole's multiplexer, hashicorp/yamux as
// configured by internal/transport, beside xtaci/smux (protocol version 2,
// which has per-stream flow control), both over the same coder/websocket
// connection on loopback:
//
//   - one stream's throughput per stream window, with an optional added
//     round-trip time (a relay that delays each direction);
//   - request/response round trips per second over 1 and 64 streams
//     (128 B request, 1 KiB response), with p50/p99 latency;
//   - memory per idle session (one open stream each, a read pending on
//     both ends), both ends counted, from the Go runtime after a GC.
//
// It is its own module so that smux stays out of porthole's go.mod; it
// uses porthole's packages through a replace directive, so when
// internal/transport gains a dependency, run `go mod tidy` here first:
//
//	cd bench/muxcompare && go run .
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/xtaci/smux"

	"github.com/porthole/porthole/internal/transport"
)

// session is the part of a multiplexer session the measurements use.
type session interface {
	open() (net.Conn, error)
	accept() (net.Conn, error)
	Close() error
}

type yamuxSession struct{ *transport.Session }

func (s yamuxSession) open() (net.Conn, error)   { return s.OpenStream() }
func (s yamuxSession) accept() (net.Conn, error) { return s.AcceptStream() }

type smuxSession struct{ *smux.Session }

func (s smuxSession) open() (net.Conn, error)   { return s.OpenStream() }
func (s smuxSession) accept() (net.Conn, error) { return s.AcceptStream() }

// kind builds both ends of a session over an accepted and a dialed
// WebSocket.
type kind struct {
	name string
	pair func(window int, rtt time.Duration) (srv, cli session, stop func(), err error)
}

var kinds = []kind{{"yamux", yamuxPair}, {"smux v2", smuxPair}}

// yamuxPair is porthole's own stack: transport.Accept and transport.Dial.
func yamuxPair(window int, rtt time.Duration) (session, session, func(), error) {
	o := transport.Options{StreamWindow: uint32(window)}
	got := make(chan *transport.Session, 1)
	url, stop, err := serveWS(rtt, func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Accept(w, r, o)
		if err != nil {
			got <- nil
			return
		}
		got <- s
	})
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := transport.Dial(context.Background(), url, transport.DialOptions{Mux: o})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	s := <-got
	if s == nil {
		stop()
		return nil, nil, nil, errors.New("accept failed")
	}
	return yamuxSession{s}, yamuxSession{c}, func() { c.Close(); s.Close(); stop() }, nil
}

func smuxConfig(window int) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveDisabled = true // porthole's control protocol has its own heartbeat
	c.MaxStreamBuffer = window
	c.MaxReceiveBuffer = max(window, 4<<20)
	return c
}

// smuxPair runs smux over the same WebSocket settings porthole uses.
func smuxPair(window int, rtt time.Duration) (session, session, func(), error) {
	got := make(chan *smux.Session, 1)
	url, stop, err := serveWS(rtt, func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			got <- nil
			return
		}
		s, err := smux.Server(frameConn{websocket.NetConn(context.Background(), ws, websocket.MessageBinary)}, smuxConfig(window))
		if err != nil {
			got <- nil
			return
		}
		got <- s
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ws, _, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	c, err := smux.Client(frameConn{websocket.NetConn(context.Background(), ws, websocket.MessageBinary)}, smuxConfig(window))
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	s := <-got
	if s == nil {
		stop()
		return nil, nil, nil, errors.New("accept failed")
	}
	return smuxSession{s}, smuxSession{c}, func() { c.Close(); s.Close(); stop() }, nil
}

// frameConn gives smux scatter-gather writes, so that a frame's header and
// body travel as one WebSocket message (what transport's coalescing writer
// does for yamux) and smux does not keep a 64 KiB send buffer per session.
type frameConn struct{ net.Conn }

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (c frameConn) WriteBuffers(v [][]byte) (int, error) {
	bp := framePool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, p := range v {
		b = append(b, p...)
	}
	n, err := c.Conn.Write(b)
	*bp = b
	framePool.Put(bp)
	return n, err
}

// serveWS starts an HTTP server whose handler upgrades to a WebSocket and
// returns a ws:// URL to reach it, through a delaying relay when rtt > 0.
func serveWS(rtt time.Duration, h http.HandlerFunc) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	addr := ln.Addr().String()
	stopRelay := func() {}
	if rtt > 0 {
		addr, stopRelay, err = relay(addr, rtt/2)
		if err != nil {
			srv.Close()
			return "", nil, err
		}
	}
	return "ws://" + addr, func() { stopRelay(); srv.Close() }, nil
}

func main() {
	dur := flag.Duration("duration", 5*time.Second, "time per throughput and request/response measurement")
	windows := flag.String("windows", "256KiB,1MiB,4MiB", "stream windows for the throughput measurement")
	rtts := flag.String("rtts", "0,10ms", "added round-trip times for the throughput measurement")
	sessions := flag.Int("sessions", 1000, "idle sessions for the memory measurement")
	flag.Parse()

	var ws []int
	for _, s := range strings.Split(*windows, ",") {
		var n int
		var unit string
		fmt.Sscanf(strings.TrimSpace(s), "%d%s", &n, &unit)
		switch unit {
		case "KiB":
			n <<= 10
		case "MiB":
			n <<= 20
		}
		ws = append(ws, n)
	}
	var rs []time.Duration
	for _, s := range strings.Split(*rtts, ",") {
		d, _ := time.ParseDuration(strings.TrimSpace(s))
		if s == "0" {
			d = 0
		}
		rs = append(rs, d)
	}

	fmt.Printf("yamux (porthole's internal/transport) vs smux v2 over coder/websocket on loopback; %d CPUs, %s\n\n", runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "one stream, MB/s\twindow\tadded RTT\tyamux\tsmux v2\t")
	for _, w := range ws {
		for _, rtt := range rs {
			cells := []string{"", fmtSize(w), rtt.String()}
			for _, k := range kinds {
				mbps, err := throughput(k, w, rtt, *dur)
				cells = append(cells, result(fmt.Sprintf("%.0f", mbps), err))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "request/response\tstreams\tyamux\tsmux v2\t")
	for _, n := range []int{1, 64} {
		cells := []string{"round trips/s, p50, p99", fmt.Sprint(n)}
		for _, k := range kinds {
			rate, p50, p99, err := reqResp(k, n, *dur)
			cells = append(cells, result(fmt.Sprintf("%.0f, %s, %s", rate, p50.Round(time.Microsecond), p99.Round(time.Microsecond)), err))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	cells := []string{"memory per idle session (both ends)", fmt.Sprint(*sessions)}
	for _, k := range kinds {
		heap, stack, gs, err := idle(k, *sessions)
		cells = append(cells, result(fmt.Sprintf("heap %.1f KiB + stacks %.1f KiB, %.0f goroutines", heap/1024, stack/1024, gs), err))
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	tw.Flush()
}

func result(s string, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return s
}

func fmtSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// throughput: the server end opens a stream (as porthole's server does for
// a visitor), the client end writes into it for d, the server reads.
func throughput(k kind, window int, rtt time.Duration, d time.Duration) (float64, error) {
	srv, cli, stop, err := k.pair(window, rtt)
	if err != nil {
		return 0, err
	}
	defer stop()
	st, err := srv.open()
	if err != nil {
		return 0, err
	}
	// smux announces a stream with its first frame; yamux at once.
	st.Write([]byte{0})
	cs, err := cli.accept()
	if err != nil {
		return 0, err
	}
	var one [1]byte
	io.ReadFull(cs, one[:])
	start := time.Now()
	go func() {
		buf := make([]byte, 32<<10)
		for time.Since(start) < d {
			if _, err := cs.Write(buf); err != nil {
				return
			}
		}
		cs.Close()
	}()
	n, err := io.CopyBuffer(io.Discard, onlyReader{st}, make([]byte, 32<<10))
	el := time.Since(start)
	if err != nil && n == 0 {
		return 0, err
	}
	return float64(n) / 1e6 / el.Seconds(), nil
}

// reqResp runs n streams, each in a closed loop of 128 B requests from the
// server end and 1 KiB responses from the client end.
func reqResp(k kind, n int, d time.Duration) (float64, time.Duration, time.Duration, error) {
	srv, cli, stop, err := k.pair(1<<20, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	go func() {
		for {
			cs, err := cli.accept()
			if err != nil {
				return
			}
			go func() {
				req := make([]byte, 128)
				resp := make([]byte, 1024)
				for {
					if _, err := io.ReadFull(cs, req); err != nil {
						return
					}
					if _, err := cs.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	var (
		mu    sync.Mutex
		lat   []time.Duration
		wg    sync.WaitGroup
		fails atomic.Int64
	)
	end := time.Now().Add(d)
	for i := 0; i < n; i++ {
		st, err := srv.open()
		if err != nil {
			return 0, 0, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, 128)
			resp := make([]byte, 1024)
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				binary.BigEndian.PutUint64(req, uint64(t0.UnixNano()))
				if _, err := st.Write(req); err != nil {
					fails.Add(1)
					return
				}
				if _, err := io.ReadFull(st, resp); err != nil {
					fails.Add(1)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if fails.Load() > 0 {
		return 0, 0, 0, fmt.Errorf("%d streams failed", fails.Load())
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0, 0, errors.New("no round trips")
	}
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*f))] }
	return float64(len(lat)) / d.Seconds(), q(0.5), q(0.99), nil
}

// idle opens n sessions, each with one stream that both ends are reading
// (porthole's control stream), and returns heap and stack bytes and
// goroutines per session.
func idle(k kind, n int) (heap, stack, goroutines float64, err error) {
	before := memNow()
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	for i := 0; i < n; i++ {
		srv, cli, stop, err := k.pair(1<<20, 0)
		if err != nil {
			return 0, 0, 0, err
		}
		stops = append(stops, stop)
		st, err := cli.open()
		if err != nil {
			return 0, 0, 0, err
		}
		st.Write([]byte{0})
		ss, err := srv.accept()
		if err != nil {
			return 0, 0, 0, err
		}
		go io.Copy(io.Discard, ss)
		go io.Copy(io.Discard, st)
	}
	time.Sleep(time.Second)
	after := memNow()
	// Each pair also holds one test HTTP server (listener and accept loop),
	// which porthole's server shares across sessions: subtract one idle
	// http.Server's cost, measured the same way.
	srvHeap, srvStack, srvG := httpServerCost()
	f := float64(n)
	return float64(after.heap-before.heap)/f - srvHeap, float64(after.stack-before.stack)/f - srvStack,
		float64(after.g-before.g)/f - srvG, nil
}

type mem struct{ heap, stack, g int64 }

func memNow() mem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return mem{int64(m.HeapInuse), int64(m.StackInuse), int64(runtime.NumGoroutine())}
}

// httpServerCost is what one idle test server (listener, Serve loop)
// costs, per server, measured over 200 of them.
func httpServerCost() (heap, stack, g float64) {
	const n = 200
	before := memNow()
	var srvs []*http.Server
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			break
		}
		s := &http.Server{}
		go s.Serve(ln)
		srvs = append(srvs, s)
	}
	time.Sleep(200 * time.Millisecond)
	after := memNow()
	for _, s := range srvs {
		s.Close()
	}
	return float64(after.heap-before.heap) / n, float64(after.stack-before.stack) / n, float64(after.g-before.g) / n
}

type onlyReader struct{ io.Reader }

// relay forwards connections to dst, delaying each chunk by delay in each
// direction.
func relay(dst string, delay time.Duration) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", dst)
			if err != nil {
				a.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, a, b)
			mu.Unlock()
			go delayCopy(a, b, delay)
			go delayCopy(b, a, delay)
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}, nil
}

func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	ch := make(chan chunk, 1<<16)
	go func() {
		defer close(ch)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				ch <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
