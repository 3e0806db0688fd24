package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the run: the porthole server or client, the
// local app, or a helper.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	lines   chan string // stdout, line by line
	exited  chan struct{}
	waitErr error
}

// startProc starts bin with args. Its stdout is read line by line into
// p.lines; its stderr goes to a log file in dir.
func startProc(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log"), lines: make(chan string, 4096), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = logf
	// A child must not outlive the run, even when the run is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody listens any more; keep draining
			}
		}
		p.waitErr = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitLine returns the first stdout line for which match is true.
func (p *proc) waitLine(timeout time.Duration, match func(string) bool) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l := <-p.lines:
			if match(l) {
				return l, nil
			}
		case <-p.exited:
			return "", fmt.Errorf("%s exited (%v); last log lines:\n%s", p.name, p.waitErr, p.tail(15))
		case <-t.C:
			return "", fmt.Errorf("%s: no expected output within %s; last log lines:\n%s", p.name, timeout, p.tail(15))
		}
	}
}

// stop asks the process to end (SIGTERM) and kills it if it does not
// within a few seconds.
func (p *proc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(8 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var urlRE = regexp.MustCompile(`(https?|tcp)://[^ ]+`)

// forwardingURL extracts the public URL from a client's Forwarding line,
// as the contract tells scripts to.
func forwardingURL(line string) (string, bool) {
	if !strings.HasPrefix(line, "Forwarding") {
		return "", false
	}
	u := urlRE.FindString(line)
	return u, u != ""
}

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

// cpuTime returns user+system CPU time of pid, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after
	// its closing parenthesis, at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	return time.Duration(utime+stime) * time.Second / time.Duration(clockTicks), nil
}

// clockTicks is sysconf(_SC_CLK_TCK), 100 on every Linux ABI Go supports.
const clockTicks = 100

// rss returns the resident set size of pid in bytes (VmRSS).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			kb, err := strconv.ParseInt(v, 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// cpuOf sums the CPU time of pids.
func cpuOf(pids ...int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		d, err := cpuTime(p)
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
	return time.Duration(idle+iowait) * time.Second / clockTicks
}
