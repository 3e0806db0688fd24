package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
	"github.com/porthole/porthole/internal/version"
)

// runner starts the processes of a run and remembers where they log.
type runner struct {
	o   *options
	dir string // temporary: logs, data, configs
	bin string // the porthole binary
	// built says what was measured: the binary's version, and the
	// commit when this program built it.
	built string
	self  string // this program, for the app and helper roles
	env   []string
}

func newRunner(o *options) (*runner, error) {
	dir, err := os.MkdirTemp("", "porthole-bench-")
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, dir: dir, self: self, bin: o.porthole}
	if o.gomaxprocs > 0 {
		r.env = append(r.env, "GOMAXPROCS="+strconv.Itoa(o.gomaxprocs))
	}
	if r.bin == "" && o.profile == "" {
		r.bin = filepath.Join(dir, "porthole")
		fmt.Fprintln(os.Stderr, "building ./cmd/porthole ...")
		if err := procs.BuildPorthole(r.bin); err != nil {
			return nil, fmt.Errorf("build porthole (run from inside the repository, or pass -porthole): %w", err)
		}
		if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			r.built = "built from commit " + strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
				r.built += " plus uncommitted changes"
			}
		}
	}
	switch {
	case r.bin != "":
		if out, err := exec.Command(r.bin, "version").Output(); err == nil {
			r.built = strings.Trim(strings.TrimSpace(string(out))+", "+r.built, ", ")
		}
	default:
		r.built = "server and client linked into this program (-profile), " + version.String()
	}
	return r, nil
}

func (r *runner) close() {
	if r.o.keep {
		fmt.Fprintln(os.Stderr, "kept", r.dir)
		return
	}
	os.RemoveAll(r.dir)
}

// startApp starts the local app as its own process.
func (r *runner) startApp() (*procs.Proc, string, error) {
	p, err := procs.Start(r.dir, "app", r.env, r.self, "-role", "app", "-listen", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	l, err := p.WaitLine(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "listening ") })
	if err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, strings.TrimPrefix(l, "listening "), nil
}

// serverProc is a running porthole server.
type serverProc struct {
	*procs.Proc
	httpAddr, tunnelAddr, adminAddr string
	pprof                           string // profiling endpoint (profile mode)
}

func (s *serverProc) tunnelURL() string { return "ws://" + s.tunnelAddr }

// startServer starts `porthole server --no-auth` on free loopback ports;
// window, when not 0, sets the multiplexer stream window in its config.
func (r *runner) startServer(name string, window int) (*serverProc, error) {
	return r.startServerBin(name, variant{bin: r.bin}, window)
}

// variant is a porthole build and how to run it: the one under test, or
// the -compare one.
type variant struct {
	bin      string
	env      []string // added to the run's environment
	logLevel string   // empty: -log-level
}

func (r *runner) variantEnv(v variant) []string {
	return append(append([]string(nil), r.env...), v.env...)
}

func (r *runner) logLevel(v variant) string {
	if v.logLevel != "" {
		return v.logLevel
	}
	return r.o.logLevel
}

// startServerBin is startServer with another porthole variant.
func (r *runner) startServerBin(name string, v variant, window int) (*serverProc, error) {
	s := &serverProc{}
	for _, a := range []*string{&s.httpAddr, &s.tunnelAddr, &s.adminAddr} {
		var err error
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(r.dir, name+"-data")
	var err error
	if r.o.profile != "" {
		s.Proc, err = procs.Start(r.dir, name, r.env, r.self, "-role", "server",
			"-http-addr", s.httpAddr, "-tunnel-addr", s.tunnelAddr, "-admin-addr", s.adminAddr,
			"-data-dir", data, "-window", strconv.Itoa(window), "-log-level", r.o.logLevel,
			// The idle phases' heap profiles record every allocation.
			"-mem-profile-rate", map[bool]string{true: "1", false: "0"}[name != "server"])
	} else {
		args := []string{"server", "--no-auth", "--domain", "localhost",
			"--http-addr", s.httpAddr, "--tunnel-addr", s.tunnelAddr, "--admin-addr", s.adminAddr,
			"--data-dir", data, "--log-level", r.logLevel(v)}
		if window != 0 {
			cfg := filepath.Join(r.dir, name+".toml")
			if err := os.WriteFile(cfg, fmt.Appendf(nil, "[tunnel]\nstream_window = %d\n", window), 0o600); err != nil {
				return nil, err
			}
			args = append(args, "--config", cfg)
		}
		s.Proc, err = procs.Start(r.dir, name, r.variantEnv(v), v.bin, args...)
	}
	if err != nil {
		return nil, err
	}
	if r.o.profile != "" {
		l, err := s.WaitLine(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "pprof ") })
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.pprof = strings.TrimPrefix(l, "pprof ")
	}
	if err := waitHTTP("http://"+s.adminAddr+"/healthz", 15*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%s not healthy: %w; log:\n%s", name, err, s.Tail(15))
	}
	return s, nil
}

// clientProc is a running porthole client.
type clientProc struct {
	*procs.Proc
	urls  []string
	pprof string
}

// startClient starts a client with n HTTP tunnels to app: `porthole http`
// for one (subdomain prefix), `porthole start` with a generated config for
// more (subdomains prefix0000, prefix0001, ...). It returns once every
// tunnel printed its Forwarding line.
func (r *runner) startClient(name string, s *serverProc, app string, n int, prefix string) (*clientProc, error) {
	return r.startClientBin(name, variant{bin: r.bin}, s, app, n, prefix)
}

// startClientBin is startClient with another porthole variant.
func (r *runner) startClientBin(name string, v variant, s *serverProc, app string, n int, prefix string) (*clientProc, error) {
	c := &clientProc{}
	var err error
	switch {
	case r.o.profile != "":
		c.Proc, err = procs.Start(r.dir, name, r.env, r.self, "-role", "client", "-server", s.tunnelURL(),
			"-app", app, "-count", strconv.Itoa(n), "-prefix", prefix, "-log-level", r.o.logLevel)
	case n == 1:
		c.Proc, err = procs.Start(r.dir, name, r.variantEnv(v), v.bin, "http", app, "--server", s.tunnelURL(),
			"--subdomain", prefix, "--inspect-addr", "off", "--log-level", r.logLevel(v))
	default:
		var b strings.Builder
		for i := 0; i < n; i++ {
			sub := fmt.Sprintf("%s%04d", prefix, i)
			fmt.Fprintf(&b, "[tunnels.%s]\nproto = \"http\"\naddr = %q\nsubdomain = %q\n\n", sub, app, sub)
		}
		cfg := filepath.Join(r.dir, name+".toml")
		if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		c.Proc, err = procs.Start(r.dir, name, r.variantEnv(v), v.bin, "start", "--config", cfg, "--server", s.tunnelURL(),
			"--inspect-addr", "off", "--log-level", r.logLevel(v))
	}
	if err != nil {
		return nil, err
	}
	timeout := 20*time.Second + time.Duration(n)*20*time.Millisecond
	if r.o.profile != "" {
		l, err := c.WaitLine(10*time.Second, func(l string) bool { return strings.HasPrefix(l, "pprof ") })
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.pprof = strings.TrimPrefix(l, "pprof ")
	}
	deadline := time.Now().Add(timeout)
	for len(c.urls) < n {
		l, err := c.WaitLine(time.Until(deadline), func(l string) bool { _, ok := procs.ForwardingURL(l); return ok })
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("%s: %d of %d tunnels up: %w", name, len(c.urls), n, err)
		}
		u, _ := procs.ForwardingURL(l)
		c.urls = append(c.urls, u)
	}
	return c, nil
}

// startSessions starts the helper that opens n client sessions.
func (r *runner) startSessions(name string, s *serverProc, app string, n int) (*procs.Proc, error) {
	p, err := procs.Start(r.dir, name, r.env, r.self, "-role", "sessions", "-server", s.tunnelURL(),
		"-app", app, "-count", strconv.Itoa(n), "-prefix", "s")
	if err != nil {
		return nil, err
	}
	if _, err := p.WaitLine(30*time.Second+time.Duration(n)*50*time.Millisecond, func(l string) bool { return strings.HasPrefix(l, "ready") }); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// tunnelTarget is the load target for a tunnel's public URL: requests carry
// its Host, connections go to the server's public listener.
func tunnelTarget(publicURL string, s *serverProc) (target, error) {
	u, err := url.Parse(publicURL)
	if err != nil {
		return target{}, err
	}
	return target{name: "tunnel", url: u.Scheme + "://" + u.Host, dial: s.httpAddr}, nil
}

// profiler starts and stops CPU profiles in the profiled processes, one
// file per phase and process.
type profiler struct {
	dir   string
	procs map[string]string // name -> profiling endpoint
}

func (p *profiler) start(phase string) {
	if p == nil {
		return
	}
	for name, addr := range p.procs {
		file := filepath.Join(p.dir, fmt.Sprintf("%s-%s.cpu.pprof", name, phase))
		get("http://" + addr + "/bench/cpu?file=" + url.QueryEscape(file))
	}
}

func (p *profiler) stop() {
	if p == nil {
		return
	}
	for _, addr := range p.procs {
		get("http://" + addr + "/bench/cpu/stop")
	}
}

// heap writes a heap profile of the process at addr.
func heapProfile(dir, addr, name string) {
	if dir == "" || addr == "" {
		return
	}
	get("http://" + addr + "/bench/heap?file=" + url.QueryEscape(filepath.Join(dir, name+".heap.pprof")))
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(filepath.Join(dir, name+".goroutines.txt")); err == nil {
		io.Copy(f, resp.Body)
		f.Close()
	}
}

func get(u string) {
	resp, err := http.Get(u)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	resp.Body.Close()
}

// readMemStats asks a profiled process for its Go memory figures.
func readMemStats(addr string) (memStats, bool) {
	var m memStats
	if addr == "" {
		return m, false
	}
	resp, err := http.Get("http://" + addr + "/bench/memstats")
	if err != nil {
		return m, false
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m) == nil
}
