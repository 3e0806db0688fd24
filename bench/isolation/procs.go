package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// proc is a porthole process; stdout is scanned for a pattern, stderr
// goes to a log file in the work directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	logf *os.File
	done chan struct{}
}

func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logf: logf, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=")
	p.cmd.Stderr = logf
	p.cmd.Stdout = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.out.Write(b)
	})
	// A child must not outlive the run.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// waitFor returns the first match of re in what read returns.
func (p *proc) waitFor(read func() string, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(read()); m != nil {
			return m, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited; see %s", p.name, p.logf.Name())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no %s within %s; see %s", p.name, re, timeout, p.logf.Name())
		}
	}
}

func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) stderr() string {
	b, _ := os.ReadFile(p.logf.Name())
	return string(b)
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// cpuSeconds is the process's user+system CPU time so far (Linux).
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// server is a running porthole server.
type server struct {
	*proc
	bin, dir, cfg               string
	http, tunnel, admin, domain string
}

func startServer(dir, bin, configTOML string) (*server, error) {
	cfg := filepath.Join(dir, "server.toml")
	if err := os.WriteFile(cfg, []byte(configTOML), 0o600); err != nil {
		return nil, err
	}
	s := &server{bin: bin, dir: filepath.Join(dir, "data"), cfg: cfg, domain: "iso.test"}
	p, err := startProc(dir, "server", bin, "server", "--log-format", "json", "--config", cfg, "--data-dir", s.dir,
		"--domain", s.domain, "--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.proc = p
	m, err := p.waitFor(p.stderr, regexp.MustCompile(`\{[^\n]*"msg":"server started"[^\n]*\}`), 20*time.Second)
	if err != nil {
		return nil, err
	}
	var a struct{ HTTP, Tunnel, Admin string }
	if err := json.Unmarshal([]byte(m[0]), &a); err != nil {
		return nil, err
	}
	s.http, s.tunnel, s.admin = a.HTTP, a.Tunnel, a.Admin
	return s, nil
}

// adminCmd runs porthole admin on the server's data and returns the last
// line of its output.
func (s *server) adminCmd(args ...string) (string, error) {
	cmd := exec.Command(s.bin, append(append([]string{"admin"}, args...), "--data-dir", s.dir, "--config", s.cfg)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("porthole admin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// limitHits reads porthole_limit_hits_total by kind from /metrics.
func (s *server) limitHits() map[string]float64 {
	hits := map[string]float64{}
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return hits
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^porthole_limit_hits_total\{kind="([a-z_]+)"\} (\S+)$`)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			hits[m[1]] = v
		}
	}
	return hits
}

var forwarding = regexp.MustCompile(`(?m)^Forwarding (https?://[^ ]+)`)

// startClient runs `porthole http PORT` for user's key and returns the
// process and the tunnel's hostname.
func startClient(dir, bin, name string, s *server, appPort int, key string) (*proc, string, error) {
	p, err := startProc(dir, "client-"+name, bin, "http", strconv.Itoa(appPort), "--server", "ws://"+s.tunnel,
		"--api-key", key, "--inspect-addr", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	m, err := p.waitFor(p.stdout, forwarding, 20*time.Second)
	if err != nil {
		p.stop()
		return nil, "", err
	}
	host := strings.TrimPrefix(m[1], "http://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return p, host, nil
}

// startApp serves h on a loopback port in this process.
func startApp(h http.Handler) (port int, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return ln.Addr().(*net.TCPAddr).Port, func() { srv.Close() }, nil
}

// visitor returns an HTTP client that sends every request to the public
// listener at addr, whatever the URL's host (as DNS for *.domain would).
func visitor(addr string, conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConnsPerHost: conns,
			DisableCompression:  true,
		},
		Timeout: 60 * time.Second,
	}
}

// drain reads and discards a body, returning the bytes read.
func drain(r io.Reader) int64 {
	n, _ := io.Copy(io.Discard, r)
	return n
}
