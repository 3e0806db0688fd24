package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP polls url until it answers 200.
func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rss returns the resident set size of pid in bytes (VmRSS).
func rss(pid int) (int64, error) { return procs.RSS(pid) }

// cpuOf sums the CPU time of pids.
func cpuOf(pids ...int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		d, err := procs.CPUTime(p)
		if err == nil {
			sum += d
		}
	}
	return sum
}

// rssWatch samples the RSS of some processes until stopped and keeps the
// maximum of each.
type rssWatch struct {
	pids []int
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	max  []int64
}

func watchRSS(pids ...int) *rssWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &rssWatch{pids: pids, stop: cancel, done: make(chan struct{}), max: make([]int64, len(pids))}
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.pids {
		if v, err := rss(p); err == nil && v > w.max[i] {
			w.max[i] = v
		}
	}
}

// finish stops sampling and returns the maxima, in the order of pids.
func (w *rssWatch) finish() []int64 {
	w.stop()
	<-w.done
	w.sample()
	return w.max
}

// steadyRSS reads pid's RSS a few times over a second and returns the
// median, so one sample taken during a GC cycle does not skew it.
func steadyRSS(pid int) int64 {
	var v []int64
	for i := 0; i < 5; i++ {
		if r, err := rss(pid); err == nil {
			v = append(v, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(v) == 0 {
		return 0
	}
	for i := range v {
		for j := i + 1; j < len(v); j++ {
			if v[j] < v[i] {
				v[i], v[j] = v[j], v[i]
			}
		}
	}
	return v[len(v)/2]
}

// openFiles counts pid's open file descriptors (/proc/PID/fd); -1 if they
// cannot be read.
func openFiles(pid int) int {
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(e)
}

// fileLimit returns pid's soft open-file limit, from /proc/PID/limits.
func fileLimit(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Max open files"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				if f[0] == "unlimited" {
					return math.MaxUint64, nil
				}
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no open-file limit in /proc/%d/limits", pid)
}

// idleTime returns the machine's idle plus iowait time, from /proc/stat.
func idleTime() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	idle, _ := strconv.ParseInt(f[4], 10, 64)
	iowait, _ := strconv.ParseInt(f[5], 10, 64)
	return time.Duration(idle+iowait) * time.Second / procs.ClockTicks
}
