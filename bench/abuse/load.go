package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
)

// The legitimate tunnel's steady load: a few visitors, each with one
// keep-alive connection and one request in flight at a time (a closed
// loop), each sending on a fixed schedule. A request's latency is counted
// from its scheduled time, so a stall shows in every request it delays
// and not just in the one it held up. A control visitor asks the same
// app directly, not through porthole: how much of a change is the
// machine's (two cores shared by everything here) rather than the
// server's.

// phaseRec collects one phase's samples.
type phaseRec struct {
	start    time.Time
	mu       sync.Mutex
	lat      []time.Duration
	at       []time.Duration // each lat's scheduled time, from start
	errKinds map[string]int
	ctl      []time.Duration
	ctlErrs  int
}

func (r *phaseRec) add(control bool, at time.Time, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case control && err != nil:
		r.ctlErrs++
	case control:
		r.ctl = append(r.ctl, d)
	case err != nil:
		r.errKinds[err.Error()]++
	default:
		r.lat = append(r.lat, d)
		r.at = append(r.at, at.Sub(r.start))
	}
}

func (r *phaseRec) errors() int {
	n := 0
	for _, v := range r.errKinds {
		n += v
	}
	return n
}

// load is the running steady load.
type load struct {
	cur    atomic.Pointer[phaseRec]
	dials  atomic.Int64 // connections the visitors opened: more than one each is a reconnect
	late   atomic.Int64 // schedule slots dropped after falling 2 s behind
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad starts conns visitors of url (a tunnel host on the public
// listener httpAddr), each sending one request per interval, and a
// control visitor of directURL at 50 a second.
func startLoad(httpAddr, url, directURL string, conns int, interval time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	for i := range conns {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				l.dials.Add(1)
				return d.DialContext(ctx, network, httpAddr)
			},
			MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true,
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		l.wg.Add(1)
		go l.visit(ctx, c, url, false, interval, time.Duration(i)*interval/time.Duration(conns))
	}
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	l.wg.Add(1)
	go l.visit(ctx, direct, directURL, true, 20*time.Millisecond, 0)
	return l
}

func (l *load) visit(ctx context.Context, c *http.Client, url string, control bool, interval, offset time.Duration) {
	defer l.wg.Done()
	defer c.CloseIdleConnections()
	next := time.Now().Add(offset)
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rec := l.cur.Load() // the phase of the scheduled time
		err := get(ctx, c, url)
		if ctx.Err() != nil {
			return
		}
		if rec != nil {
			rec.add(control, next, time.Since(next), err)
		}
		next = next.Add(interval)
		if time.Since(next) > 2*time.Second {
			next = time.Now()
			l.late.Add(1)
		}
	}
}

// get asks for url and checks the answer: 200 with the app's 1 KiB.
func get(ctx context.Context, c *http.Client, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("transport error")
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d %s", resp.StatusCode, resp.Header.Get("X-Porthole-Error"))
	case err != nil || n != 1024:
		return fmt.Errorf("body cut short")
	}
	return nil
}

// begin starts recording a phase.
func (l *load) begin() { l.cur.Store(&phaseRec{start: time.Now(), errKinds: map[string]int{}}) }

// end stops recording and returns the phase's samples. Requests still in
// flight are left out: only a few, at most one per visitor.
func (l *load) end() *phaseRec {
	r := l.cur.Swap(nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	return &phaseRec{start: r.start, lat: r.lat, at: r.at, errKinds: r.errKinds, ctl: r.ctl, ctlErrs: r.ctlErrs}
}

// bySecond returns the p99 of each second of the phase, in ms, and the
// p99 of the samples scheduled skip or more after its start: whether a
// high p99 is the attack's ramp-up or lasts.
func (r *phaseRec) bySecond(skip time.Duration) (perSecond []float64, after float64) {
	var secs [][]time.Duration
	var late []time.Duration
	for i, d := range r.lat {
		s := int(r.at[i] / time.Second)
		for len(secs) <= s {
			secs = append(secs, nil)
		}
		secs[s] = append(secs[s], d)
		if r.at[i] >= skip {
			late = append(late, d)
		}
	}
	for _, s := range secs {
		perSecond = append(perSecond, harness.Summarise(s, 0).P99ms)
	}
	return perSecond, harness.Summarise(late, 0).P99ms
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (r *phaseRec) stats() (tunnel, control harness.LatencyStats) {
	return harness.Summarise(slices.Clone(r.lat), r.errors()), harness.Summarise(r.ctl, r.ctlErrs)
}
