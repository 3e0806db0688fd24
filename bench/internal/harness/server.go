// Package harness starts the pieces of a porthole benchmark on loopback:
// a server process, client processes, local apps in the benchmark's own
// process, and visitors; and reads the server's metrics.
package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
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

// StartProc starts a child of the run with the porthole credentials
// cleared from its environment (so that the caller's own never leak into
// a measurement); Stop interrupts it and kills it if it has not exited
// after 10 s.
func StartProc(dir, name, bin string, args ...string) (*procs.Proc, error) {
	p, err := procs.Start(dir, name, []string{"PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER="}, bin, args...)
	if err != nil {
		return nil, err
	}
	p.StopSignal, p.StopGrace = os.Interrupt, 10*time.Second
	return p, nil
}

// Server is a running porthole server.
type Server struct {
	*procs.Proc
	Bin, DataDir, ConfigPath string
	// HTTP, Tunnel and Admin are the listeners' addresses, as the server
	// logged them.
	HTTP, Tunnel, Admin, Domain string
}

// ServerOptions says how to start a server. Every listener is on a free
// loopback port.
type ServerOptions struct {
	Name   string // the process's name in the run's directory; "server" if empty
	Domain string // --domain
	// Config is the TOML of --config; without it the server runs on its
	// defaults, with no config file.
	Config string
	Args   []string // more flags, e.g. --no-auth
}

// StartServer starts `porthole server` with its data in dir.
func StartServer(dir, bin string, o ServerOptions) (*Server, error) {
	if o.Name == "" {
		o.Name = "server"
	}
	s := &Server{Bin: bin, DataDir: filepath.Join(dir, o.Name+"-data"), Domain: o.Domain}
	args := []string{"server", "--log-format", "json", "--data-dir", s.DataDir, "--domain", o.Domain,
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	if o.Config != "" {
		s.ConfigPath = filepath.Join(dir, o.Name+".toml")
		if err := os.WriteFile(s.ConfigPath, []byte(o.Config), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", s.ConfigPath)
	}
	p, err := StartProc(dir, o.Name, bin, append(args, o.Args...)...)
	if err != nil {
		return nil, err
	}
	s.Proc = p
	m, err := p.WaitFor(p.Stderr, regexp.MustCompile(`\{[^\n]*"msg":"server started"[^\n]*\}`), 20*time.Second)
	if err != nil {
		p.Stop()
		return nil, err
	}
	var a struct{ HTTP, Tunnel, Admin string }
	if err := json.Unmarshal([]byte(m[0]), &a); err != nil {
		p.Stop()
		return nil, err
	}
	s.HTTP, s.Tunnel, s.Admin = a.HTTP, a.Tunnel, a.Admin
	return s, nil
}

// AdminCmd runs porthole admin on the server's data and returns the last
// line of its output.
func (s *Server) AdminCmd(args ...string) (string, error) {
	args = append(append([]string{"admin"}, args...), "--data-dir", s.DataDir)
	if s.ConfigPath != "" {
		args = append(args, "--config", s.ConfigPath)
	}
	out, err := exec.Command(s.Bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("porthole %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// UserKey adds a user and returns a new API key of theirs.
func (s *Server) UserKey(user string) (string, error) {
	if _, err := s.AdminCmd("users", "add", user); err != nil {
		return "", err
	}
	return s.AdminCmd("keys", "create", "--user", user)
}

// TunnelURL is the ws:// address of the tunnel listener.
func (s *Server) TunnelURL() string { return "ws://" + s.Tunnel }

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// Metrics reads the server's /metrics: each sample by its name with its
// labels as printed (porthole_limit_hits_total{kind="client_frames"}).
func (s *Server) Metrics() (map[string]float64, error) {
	resp, err := metricsClient.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// Metric reads one sample of /metrics, as Metrics names it.
func (s *Server) Metric(name string) (float64, error) {
	m, err := s.Metrics()
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("/metrics has no %s", name)
	}
	return v, nil
}

// LimitHits reads porthole_limit_hits_total by kind (empty when /metrics
// cannot be read).
func (s *Server) LimitHits() map[string]float64 {
	m, _ := s.Metrics()
	return LimitHits(m)
}

// LimitHits picks porthole_limit_hits_total by kind out of Metrics.
func LimitHits(m map[string]float64) map[string]float64 {
	hits := map[string]float64{}
	for k, v := range m {
		if kind, ok := strings.CutPrefix(k, `porthole_limit_hits_total{kind="`); ok {
			hits[strings.TrimSuffix(kind, `"}`)] = v
		}
	}
	return hits
}
