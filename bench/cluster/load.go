package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
)

// startApp serves the origin app on a loopback port in this process:
// every request gets size bytes.
func startApp(size int) (port string, stop func(), err error) {
	body := bytes.Repeat([]byte("x"), size)
	p, stop, err := harness.StartApp(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	return strconv.Itoa(p), stop, err
}

// visitor is harness.Visitor (every connection to addr, a node's public
// listener, whatever the URL's host) with at most conns connections and
// the given request timeout.
func visitor(addr string, conns int, timeout time.Duration) *http.Client {
	hc := harness.Visitor(addr, conns)
	hc.Transport.(*http.Transport).MaxConnsPerHost = conns
	hc.Timeout = timeout
	return hc
}

func status(hc *http.Client, host string) int {
	resp, err := hc.Get("http://" + host + "/")
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// loadResult is one load run: the latency of every request that started
// in the measured window, and the failures.
type loadResult struct {
	samples []time.Duration
	errors  int
	took    time.Duration // the measured window
	cpu     map[string]time.Duration
	busy    time.Duration // the whole machine's CPU time in the window
}

func (l *loadResult) merge(o loadResult) {
	l.samples = append(l.samples, o.samples...)
	l.errors += o.errors
	l.took += o.took
	l.busy += o.busy
	if l.cpu == nil {
		l.cpu = map[string]time.Duration{}
	}
	for k, v := range o.cpu {
		l.cpu[k] += v
	}
}

func (l *loadResult) rate() float64 {
	if l.took <= 0 {
		return 0
	}
	return float64(len(l.samples)) / l.took.Seconds()
}

// quantile of the samples (sorted in place).
func (l *loadResult) quantile(q float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	slices.Sort(l.samples)
	return l.samples[min(len(l.samples)-1, int(q*float64(len(l.samples))))]
}

// cpuPerRequest is the CPU time of the named processes over the measured
// window, divided by the requests of that window.
func (l *loadResult) cpuPerRequest(names ...string) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	var t time.Duration
	for _, n := range names {
		t += l.cpu[n]
	}
	return t / time.Duration(len(l.samples))
}

// otherCPU is the CPU the processes not watched used in the window, in
// cores: the rest of the machine (at least 0: the processes' times and
// the machine's are counted differently and do not add up exactly).
func (l *loadResult) otherCPU() float64 {
	t := l.busy
	for _, v := range l.cpu {
		t -= v
	}
	if l.took <= 0 {
		return 0
	}
	return max(0, t.Seconds()/l.took.Seconds())
}

// runLoad runs conns closed loops (the next request leaves when the
// previous response is read) against host through the node at addr: the
// warm-up, then the measured window. Only requests that start in the
// window count. watch are the processes whose CPU time is taken over the
// window.
func runLoad(addr, host string, size, conns int, warmup, window time.Duration, watch map[string]int) loadResult {
	hc := visitor(addr, conns, 30*time.Second)
	defer hc.CloseIdleConnections()
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+window)
	var mu sync.Mutex
	res := loadResult{took: window, cpu: map[string]time.Duration{}}
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			errs := 0
			for {
				t0 := time.Now()
				if !t0.Before(to) {
					break
				}
				ok := false
				resp, err := hc.Get("http://" + host + "/")
				if err == nil {
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == 200 && n == int64(size)
				}
				if t0.Before(from) {
					continue
				}
				if ok {
					mine = append(mine, time.Since(t0))
				} else {
					errs++
					time.Sleep(10 * time.Millisecond)
				}
			}
			mu.Lock()
			res.samples = append(res.samples, mine...)
			res.errors += errs
			mu.Unlock()
		}()
	}
	time.Sleep(time.Until(from))
	before, busy := cpuTimes(watch), machineBusy()
	time.Sleep(time.Until(to))
	after := cpuTimes(watch)
	res.busy = machineBusy() - busy
	for k := range watch {
		res.cpu[k] = after[k] - before[k]
	}
	wg.Wait()
	return res
}

func cpuTimes(watch map[string]int) map[string]time.Duration {
	m := map[string]time.Duration{}
	for k, pid := range watch {
		if t, err := cpuTime(pid); err == nil {
			m[k] = t
		}
	}
	return m
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
