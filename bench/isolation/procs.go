package main

import (
	"bufio"
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
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

// startProc starts a child of the run with the porthole credentials
// cleared from its environment; Stop interrupts it and kills it if it
// has not exited after 10 s.
func startProc(dir, name, bin string, args ...string) (*procs.Proc, error) {
	p, err := procs.Start(dir, name, []string{"PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER="}, bin, args...)
	if err != nil {
		return nil, err
	}
	p.StopSignal, p.StopGrace = os.Interrupt, 10*time.Second
	return p, nil
}

// cpuSeconds reads p's user+system CPU time so far, in seconds (0 when
// it cannot be read).
func cpuSeconds(p *procs.Proc) func() float64 {
	return func() float64 {
		d, _ := procs.CPUTime(p.Pid())
		return d.Seconds()
	}
}

// server is a running porthole server.
type server struct {
	*procs.Proc
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
	s.Proc = p
	m, err := p.WaitFor(p.Stderr, regexp.MustCompile(`\{[^\n]*"msg":"server started"[^\n]*\}`), 20*time.Second)
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
func startClient(dir, bin, name string, s *server, appPort int, key string) (*procs.Proc, string, error) {
	p, err := startProc(dir, "client-"+name, bin, "http", strconv.Itoa(appPort), "--server", "ws://"+s.tunnel,
		"--api-key", key, "--inspect-addr", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	m, err := p.WaitFor(p.Stdout, forwarding, 20*time.Second)
	if err != nil {
		p.Stop()
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
