package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// runWindowExperiment measures one download stream through the tunnel for
// each server stream window and each added round-trip time. The round trip
// is added by a relay between client and server that delays every byte by
// half of it in each direction, as a long link would; the visitor and the
// app stay on loopback. A download's bytes flow client -> server, so the
// window that limits it is the server's receive window, which
// [tunnel] stream_window sets.
func runWindowExperiment(o *options) error {
	var windows []int
	for _, s := range strings.Split(o.windows, ",") {
		n, err := parseBytes(s)
		if err != nil {
			return err
		}
		windows = append(windows, int(n))
	}
	var rtts []time.Duration
	for _, s := range strings.Split(o.rtts, ",") {
		s = strings.TrimSpace(s)
		if s == "0" {
			rtts = append(rtts, 0)
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("-rtts: %w", err)
		}
		rtts = append(rtts, d)
	}
	r, err := newRunner(o)
	if err != nil {
		return err
	}
	defer r.close()
	app, appAddr, err := r.startApp()
	if err != nil {
		return err
	}
	defer app.Stop()

	mbps := map[[2]int]float64{}
	var direct float64
	{
		d, err := timedDownload(target{url: "http://" + appAddr, dial: appAddr}, o.duration)
		if err != nil {
			return err
		}
		direct = d.mbps()
		logf("direct: %.0f MB/s", direct)
	}
	for wi, w := range windows {
		srv, err := r.startServer(fmt.Sprintf("server-w%d", wi), w)
		if err != nil {
			return err
		}
		for ri, rtt := range rtts {
			relay, err := startRelay(srv.tunnelAddr, rtt/2)
			if err != nil {
				srv.Stop()
				return err
			}
			via := &serverProc{Proc: srv.Proc, tunnelAddr: relay.addr, httpAddr: srv.httpAddr}
			cli, err := r.startClient(fmt.Sprintf("client-w%d-r%d", wi, ri), via, appAddr, 1, fmt.Sprintf("w%dr%d", wi, ri))
			if err != nil {
				relay.close()
				srv.Stop()
				return err
			}
			tun, _ := tunnelTarget(cli.urls[0], srv)
			res, err := timedDownload(tun, o.duration)
			cli.Stop()
			relay.close()
			if err != nil {
				srv.Stop()
				return fmt.Errorf("window %s rtt %s: %w", formatBytes(int64(w)), rtt, err)
			}
			mbps[[2]int{wi, ri}] = res.mbps()
			logf("window %s, rtt +%s: %.1f MB/s (window/rtt bound %s)", formatBytes(int64(w)), rtt, res.mbps(), bound(w, rtt))
		}
		srv.Stop()
	}

	fmt.Printf("\nsingle download stream through the tunnel, MB/s (10^6 B/s), %s each; direct %.0f MB/s\n", o.duration, direct)
	fmt.Printf("machine: %s, %d CPUs; relay adds the round-trip time between client and server\n\n", cpuModel(), runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	head := []string{"server stream window"}
	for _, rtt := range rtts {
		head = append(head, "+"+rtt.String()+" RTT")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for wi, w := range windows {
		cells := []string{formatBytes(int64(w))}
		for ri, rtt := range rtts {
			cells = append(cells, fmt.Sprintf("%.1f (bound %s)", mbps[[2]int{wi, ri}], bound(w, rtt)))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	return nil
}

// bound is the throughput a window allows over a round trip: window / RTT.
func bound(window int, rtt time.Duration) string {
	if rtt == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(window)/rtt.Seconds()/1e6)
}

// timedDownload reads an endless response for d and reports the rate.
func timedDownload(t target, d time.Duration) (transferResult, error) {
	tr := newTransport(t, 1)
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get(t.url + "/bytes?n=" + strconv.FormatInt(1<<50, 10))
	if err != nil {
		return transferResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return transferResult{}, fmt.Errorf("download: %s", resp.Status)
	}
	buf := make([]byte, 64<<10)
	var n int64
	for time.Since(start) < d {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err != nil {
			return transferResult{}, fmt.Errorf("download after %d bytes: %w", n, err)
		}
	}
	return transferResult{bytes: n, elapsed: time.Since(start)}, nil
}

// relay forwards TCP connections to dst, delaying every chunk by delay in
// each direction. It buffers what is in flight, as a long link does; the
// multiplexer's window is what bounds that.
type relay struct {
	addr string
	ln   net.Listener
	mu   sync.Mutex
	cs   []net.Conn
}

func startRelay(dst string, delay time.Duration) (*relay, error) {
	if delay == 0 {
		return &relay{addr: dst}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{addr: ln.Addr().String(), ln: ln}
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
			r.mu.Lock()
			r.cs = append(r.cs, a, b)
			r.mu.Unlock()
			go delayCopy(b, a, delay)
			go delayCopy(a, b, delay)
		}
	}()
	return r, nil
}

func (r *relay) close() {
	if r.ln == nil {
		return
	}
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cs {
		c.Close()
	}
}

type chunk struct {
	b   []byte
	due time.Time
}

func delayCopy(dst, src net.Conn, delay time.Duration) {
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
		if w := time.Until(c.due); w > 0 {
			time.Sleep(w)
		}
		if _, err := dst.Write(c.b); err != nil {
			io.Copy(io.Discard, src)
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
