package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// line is one line a child printed, with the time this program read it.
type line struct {
	at     time.Time
	stderr bool
	text   string
}

// proc is a child process. Everything it prints goes to NAME.log in the
// run's directory; the lines keep accepts are also kept in memory with
// the time each one arrived, so that a phase can time what the process
// said (a client's Forwarding lines) and read where it connected.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	keep    func(string) bool

	mu    sync.Mutex
	lines []line
	log   *os.File

	done    chan struct{}
	waitErr error
}

// keepClientLines keeps what a client says about its sessions and
// tunnels, not its per-request lines.
func keepClientLines(l string) bool {
	return strings.HasPrefix(l, "Forwarding") || strings.Contains(l, "msg=connected") ||
		strings.Contains(l, "tunnel online") || strings.Contains(l, "disconnected")
}

// startProc starts bin with args in dir, its credentials variables
// cleared so that the caller's own never reach a measurement.
func startProc(dir, name string, keep func(string) bool, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log"), keep: keep, done: make(chan struct{})}
	f, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.log = f
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=", "PORTHOLE_ADMIN_TOKEN=")
	// A child must not outlive the run, even when the run is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	errOut, err := p.cmd.StderrPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go p.read(out, false, &wg)
	go p.read(errOut, true, &wg)
	go func() {
		wg.Wait()
		p.waitErr = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) read(r io.Reader, stderr bool, wg *sync.WaitGroup) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		at := time.Now()
		t := sc.Text()
		p.mu.Lock()
		p.log.WriteString(t + "\n")
		if p.keep != nil && p.keep(t) {
			p.lines = append(p.lines, line{at: at, stderr: stderr, text: t})
		}
		p.mu.Unlock()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kept returns the kept lines from index from on.
func (p *proc) kept(from int) []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from >= len(p.lines) {
		return nil
	}
	return append([]line(nil), p.lines[from:]...)
}

// waitNth waits until n kept lines match and returns the n-th.
func (p *proc) waitNth(n int, match func(string) bool, timeout time.Duration) (line, error) {
	deadline := time.Now().Add(timeout)
	seen, i := 0, 0
	for {
		exited := p.exited()
		for _, l := range p.kept(i) {
			i++
			if match(l.text) {
				seen++
				if seen == n {
					return l, nil
				}
			}
		}
		if exited {
			return line{}, fmt.Errorf("%s exited (%v); last lines:\n%s", p.name, p.waitErr, p.tail(15))
		}
		if time.Now().After(deadline) {
			return line{}, fmt.Errorf("%s: %d of %d expected lines within %s; last lines:\n%s", p.name, seen, n, timeout, p.tail(15))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends sig and kills the process if it has not exited after grace.
func (p *proc) stop(sig os.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once (SIGKILL) and waits for it.
func (p *proc) kill() error {
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New(p.name + " did not exit after SIGKILL")
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
