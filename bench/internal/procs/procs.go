// Package procs runs the child processes of a benchmark (the porthole
// server and clients, local apps, helpers) and reads what the kernel
// knows about them.
package procs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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

// Proc is a child process of a run. Its stdout is kept, and can be read
// line by line (WaitLine) or as a whole (Stdout, WaitFor); its stderr
// goes to a log file in the run's directory.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string

	// Stop sends StopSignal (SIGTERM unless set) and kills the process
	// if it has not exited after StopGrace (8 s unless set).
	StopSignal os.Signal
	StopGrace  time.Duration

	lines   chan string // stdout, line by line
	mu      sync.Mutex
	out     bytes.Buffer // stdout, all of it
	exited  chan struct{}
	waitErr error
}

// Start starts bin with args and env added to this process's
// environment, its stderr going to NAME.log in dir.
func Start(dir, name string, env []string, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, LogPath: filepath.Join(dir, name+".log"), lines: make(chan string, 4096), exited: make(chan struct{})}
	logf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stderr = logf
	// A child must not outlive the run, even when the run is killed.
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.Cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := p.Cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default: // nobody listens any more; keep draining
			}
		}
		p.waitErr = p.Cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Stdout is everything the process has printed on stdout so far.
func (p *Proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stderr is the process's log so far.
func (p *Proc) Stderr() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// WaitLine returns the first stdout line not read by an earlier WaitLine
// for which match is true.
func (p *Proc) WaitLine(timeout time.Duration, match func(string) bool) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l := <-p.lines:
			if match(l) {
				return l, nil
			}
		case <-p.exited:
			return "", fmt.Errorf("%s exited (%v); last log lines:\n%s", p.Name, p.waitErr, p.Tail(15))
		case <-t.C:
			return "", fmt.Errorf("%s: no expected output within %s; last log lines:\n%s", p.Name, timeout, p.Tail(15))
		}
	}
}

// WaitFor returns the first match of re in what read (Stdout or Stderr)
// returns.
func (p *Proc) WaitFor(read func() string, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(read()); m != nil {
			return m, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited; see %s", p.Name, p.LogPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no %s within %s; see %s", p.Name, re, timeout, p.LogPath)
		}
	}
}

// Stop asks the process to end and kills it if it does not within
// StopGrace. A nil p is already stopped.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	sig, grace := p.StopSignal, p.StopGrace
	if sig == nil {
		sig = syscall.SIGTERM
	}
	if grace == 0 {
		grace = 8 * time.Second
	}
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Stderr(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CPUTime returns user+system CPU time of pid, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
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
	return time.Duration(utime+stime) * time.Second / time.Duration(ClockTicks), nil
}

// ClockTicks is sysconf(_SC_CLK_TCK), 100 on every Linux ABI Go supports.
const ClockTicks = 100

var urlRE = regexp.MustCompile(`(https?|tcp)://[^ ]+`)

// ForwardingURL extracts the public URL from a client's Forwarding line,
// as the contract tells scripts to.
func ForwardingURL(line string) (string, bool) {
	if !strings.HasPrefix(line, "Forwarding") {
		return "", false
	}
	u := urlRE.FindString(line)
	return u, u != ""
}

// BuildPorthole builds cmd/porthole into path, with the compiler's output
// on stderr; it must run inside the module.
func BuildPorthole(path string) error {
	cmd := exec.Command("go", "build", "-o", path, "github.com/porthole/porthole/cmd/porthole")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}
