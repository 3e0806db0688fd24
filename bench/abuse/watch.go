package main

import (
	"slices"
	"sync"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
	"github.com/porthole/porthole/bench/internal/procs"
)

// watchedGauges are the server's gauges whose peaks a phase reports,
// besides the goroutines.
var watchedGauges = []string{
	"porthole_visitor_connections", "porthole_buffered_bytes", "porthole_streams", "porthole_sessions",
}

// watch samples the server during a phase: its resident set every 50 ms
// from /proc, its /metrics every 100 ms, keeping the peaks.
type watch struct {
	srv  *harness.Server
	stop chan struct{}
	done sync.WaitGroup

	mu          sync.Mutex
	rssPeak     int64
	gPeak       float64
	gauges      map[string]float64
	metricFails int // scrapes that failed or took over a second
}

func startWatch(srv *harness.Server) *watch {
	w := &watch{srv: srv, stop: make(chan struct{}), gauges: map[string]float64{}}
	w.done.Add(2)
	go w.loop(50*time.Millisecond, func() {
		if v, err := procs.RSS(srv.Pid()); err == nil {
			w.mu.Lock()
			w.rssPeak = max(w.rssPeak, v)
			w.mu.Unlock()
		}
	})
	go w.loop(100*time.Millisecond, func() {
		t0 := time.Now()
		m, err := srv.Metrics()
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil || time.Since(t0) > time.Second {
			w.metricFails++
		}
		if err != nil {
			return
		}
		w.gPeak = max(w.gPeak, m["go_goroutines"])
		for _, g := range watchedGauges {
			w.gauges[g] = max(w.gauges[g], m[g])
		}
	})
	return w
}

func (w *watch) loop(every time.Duration, sample func()) {
	defer w.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sample()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *watch) finish() {
	close(w.stop)
	w.done.Wait()
}

// level is the server's goroutines and resident set at rest: the medians
// of a few samples over a second, so that one taken during a GC cycle or
// a burst of requests does not skew it.
func level(srv *harness.Server) (goroutines int, rss int64) {
	var g []float64
	var r []int64
	for range 6 {
		if v, err := srv.Metric("go_goroutines"); err == nil {
			g = append(g, v)
		}
		if v, err := procs.RSS(srv.Pid()); err == nil {
			r = append(r, v)
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(g)
	slices.Sort(r)
	if len(g) > 0 {
		goroutines = int(g[len(g)/2])
	}
	if len(r) > 0 {
		rss = r[len(r)/2]
	}
	return goroutines, rss
}

// settle waits until the server's goroutines are back within slack of
// want (the attack before has been let go), for at most timeout, and
// returns its level then.
func settle(srv *harness.Server, want, slack int, timeout time.Duration) (int, int64, bool) {
	deadline := time.Now().Add(timeout)
	for {
		g, r := level(srv)
		if g <= want+slack || time.Now().After(deadline) {
			return g, r, g <= want+slack
		}
	}
}
