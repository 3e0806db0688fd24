package e2e

// The harness every end-to-end test drives porthole with: the binary that
// TestMain builds once, porthole processes with their output captured,
// servers on loopback ports, commands run to completion, free ports and
// local apps.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// portholeBin is the porthole binary TestMain builds once for the package.
var portholeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "porthole-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	portholeBin = filepath.Join(dir, "porthole")
	if runtime.GOOS == "windows" {
		portholeBin += ".exe"
	}
	if out, err := exec.Command("go", "build", "-o", portholeBin, "../cmd/porthole").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// portholeEnv is the environment porthole runs in: the test's, without
// the variables that would give it a server or credentials, plus extra.
func portholeEnv(extra ...string) []string {
	env := append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=", "PORTHOLE_ADMIN_TOKEN=")
	return append(env, extra...)
}

// runPorthole runs the binary with args to completion (30 s at most) and
// returns stdout, stderr and the exit code.
func runPorthole(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runPortholeEnv(t, nil, args...)
}

// runPortholeEnv is runPorthole with env added to the environment.
func runPortholeEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, portholeBin, args...)
	cmd.Env = portholeEnv(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("porthole %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// syncBuffer collects a process's output while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ending is how a process still running is stopped: it is sent sig and
// killed if it has not exited within grace; with no sig it is killed at
// once.
type ending struct {
	sig   os.Signal
	grace time.Duration
}

var (
	killed      = ending{}
	interrupted = ending{os.Interrupt, 10 * time.Second}
	terminated  = ending{syscall.SIGTERM, 5 * time.Second}
)

// proc is one porthole process with its stdout and stderr captured.
type proc struct {
	args           []string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{} // closed when the process has exited
	err            error         // what Wait returned, once done is closed
}

// startPorthole runs the binary with args. When the test ends, a process
// still running is stopped as end says, and a failed test logs its output.
func startPorthole(t *testing.T, end ending, args ...string) *proc {
	t.Helper()
	p := &proc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(portholeBin, args...)
	p.cmd.Env = portholeEnv()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.end(end)
		if t.Failed() {
			t.Logf("porthole %s\nstdout:\n%s\nstderr:\n%s", p.cmdline(), p.out(), p.errOut())
		}
	})
	return p
}

func (p *proc) cmdline() string { return strings.Join(p.args, " ") }

func (p *proc) out() string    { return p.stdout.String() }
func (p *proc) errOut() string { return p.stderr.String() }

// exited reports whether the process has exited (and all its output is in).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// end stops the process as e says and waits for it.
func (p *proc) end(e ending) {
	if p.exited() {
		return
	}
	if e.sig != nil {
		p.cmd.Process.Signal(e.sig)
		select {
		case <-p.done:
			return
		case <-time.After(e.grace):
		}
	}
	p.cmd.Process.Kill()
	<-p.done
}

// stop interrupts the process and waits for it (killing it after 10 s).
func (p *proc) stop() { p.end(interrupted) }

// kill ends the process at once (SIGKILL), as a crash or a pulled plug.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("killed process did not exit")
	}
}

// exit waits for the process to end by itself and returns its exit code,
// or minus the signal that ended it.
func (p *proc) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("porthole %s still running after %s\nstderr:\n%s", p.cmdline(), timeout, p.errOut())
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		t.Fatal(p.err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return ee.ExitCode()
}

// signal sends sig and returns the exit code as exit does, failing if
// the process does not exit within timeout.
func (p *proc) signal(t *testing.T, sig os.Signal, timeout time.Duration) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	return p.exit(t, timeout)
}

// wait returns the first match of re in the stream (p.out or p.errOut)
// within timeout.
func (p *proc) wait(t *testing.T, stream func() string, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := p.exited()
		if m := re.FindStringSubmatch(stream()); m != nil {
			return m
		}
		if exited {
			t.Fatalf("porthole %s exited (%v) without printing %s\nstdout:\n%s\nstderr:\n%s", p.cmdline(), p.err, re, p.out(), p.errOut())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no match for %s within %s\nstdout:\n%s\nstderr:\n%s", re, timeout, p.out(), p.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// urlRE finds a public URL the way the operator contract tells scripts
// to: the first match of (https?|tcp)://[^ ]+ on a line that starts with
// Forwarding.
var urlRE = regexp.MustCompile(`(https?|tcp)://[^ ]+`)

// forwardingURLsIn returns the URLs of the Forwarding lines in out, in
// order.
func forwardingURLsIn(out string) []string {
	var urls []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Forwarding") {
			if u := urlRE.FindString(line); u != "" {
				urls = append(urls, u)
			}
		}
	}
	return urls
}

// forwardingWithin waits until the process has printed n Forwarding lines
// and returns their URLs, in order.
func (p *proc) forwardingWithin(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := p.exited()
		urls := forwardingURLsIn(p.out())
		if len(urls) >= n {
			return urls
		}
		if exited {
			t.Fatalf("porthole %s exited (%v) after %d of %d Forwarding lines\nstderr:\n%s", p.cmdline(), p.err, len(urls), n, p.errOut())
		}
		if time.Now().After(deadline) {
			t.Fatalf("porthole %s printed %d of %d Forwarding lines in %s\nstderr:\n%s", p.cmdline(), len(urls), n, timeout, p.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forwardingURLs waits up to 30 s for n Forwarding lines and returns
// their URLs.
func (p *proc) forwardingURLs(t *testing.T, n int) []string {
	t.Helper()
	return p.forwardingWithin(t, n, 30*time.Second)
}

// forwarding waits up to 20 s for the first Forwarding line and returns
// its URL.
func (p *proc) forwarding(t *testing.T) string {
	t.Helper()
	return p.forwardingWithin(t, 1, 20*time.Second)[0]
}

// refused waits for a client to exit non-zero, without retrying, with a
// message matching re on stderr.
func (p *proc) refused(t *testing.T, re string) {
	t.Helper()
	if code := p.exit(t, 15*time.Second); code == 0 {
		t.Fatalf("client exited 0; want a refusal matching %q\nstderr:\n%s", re, p.errOut())
	}
	if !regexp.MustCompile(re).MatchString(p.errOut()) {
		t.Fatalf("client stderr does not match %q:\n%s", re, p.errOut())
	}
}

// count returns how many times s occurs in the process's stderr.
func (p *proc) count(s string) int { return strings.Count(p.errOut(), s) }

// serverProc is a running `porthole server` on loopback.
type serverProc struct {
	*proc
	args    []string      // its command line, to start it again
	atEnd   ending        // how it is stopped when the test ends
	healthy time.Duration // how long it may take to answer /healthz

	dataDir, cfgFile                           string
	httpAddr, httpsAddr, tunnelAddr, adminAddr string
	tunnelTLS                                  bool
}

var serverStartedRE = regexp.MustCompile(`\{[^\n]*"msg":"server started"[^\n]*\}`)

// startServer runs `porthole server --log-format json` with args on ports
// the kernel picks, and reads its addresses from its "server started"
// line, which it must print within timeout. It is interrupted when the
// test ends.
func startServer(t *testing.T, timeout time.Duration, args ...string) *serverProc {
	t.Helper()
	s := &serverProc{atEnd: interrupted}
	s.args = append([]string{"server", "--log-format", "json",
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
	s.proc = startPorthole(t, s.atEnd, s.args...)
	line := s.wait(t, s.errOut, serverStartedRE, timeout)[0]
	var a struct {
		HTTP      string `json:"http"`
		HTTPS     string `json:"https"`
		Tunnel    string `json:"tunnel"`
		TunnelTLS bool   `json:"tunnel_tls"`
		Admin     string `json:"admin"`
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		t.Fatalf("start line %q: %v", line, err)
	}
	s.httpAddr, s.httpsAddr, s.tunnelAddr, s.adminAddr, s.tunnelTLS = a.HTTP, a.HTTPS, a.Tunnel, a.Admin, a.TunnelTLS
	return s
}

// startServerAt runs `porthole server` with args on loopback addresses
// picked beforehand, so that it can be started again on the same ones,
// and waits up to healthy for its /healthz. Another program may take a
// port between the pick and the server's bind, so it tries a few times.
// When the test ends it is stopped as end says.
func startServerAt(t *testing.T, end ending, healthy time.Duration, args ...string) *serverProc {
	t.Helper()
	s := &serverProc{atEnd: end, healthy: healthy, dataDir: t.TempDir()}
	var err error
	for range 5 {
		s.httpAddr, s.tunnelAddr, s.adminAddr = freeAddr(t), freeAddr(t), freeAddr(t)
		s.args = append([]string{"server", "--http-addr", s.httpAddr, "--tunnel-addr", s.tunnelAddr,
			"--admin-addr", s.adminAddr, "--data-dir", s.dataDir}, args...)
		if err = s.run(t); err == nil {
			return s
		}
	}
	t.Fatalf("server did not start: %v", err)
	return nil
}

// run starts the server with its command line and waits for its health
// check.
func (s *serverProc) run(t *testing.T) error {
	t.Helper()
	s.proc = startPorthole(t, s.atEnd, s.args...)
	deadline := time.Now().Add(s.healthy)
	for {
		if s.exited() {
			return fmt.Errorf("server exited (%v):\n%s", s.err, s.errOut())
		}
		resp, err := http.Get("http://" + s.adminAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.end(killed)
			return fmt.Errorf("server not healthy within %s:\n%s", s.healthy, s.errOut())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart starts a server from startServerAt again, on the same
// addresses and data, once the last run has ended.
func (s *serverProc) restart(t *testing.T) {
	t.Helper()
	var err error
	for range 20 {
		if err = s.run(t); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server did not restart: %v", err)
}

// wsURL is the URL clients reach the tunnel listener at.
func (s *serverProc) wsURL() string {
	if s.tunnelTLS {
		return "wss://" + s.tunnelAddr
	}
	return "ws://" + s.tunnelAddr
}

// freePort returns a loopback port that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// client starts `porthole http APP` against s with the given flags and
// its status API on a port the kernel picks; it is interrupted when the
// test ends.
func (s *serverProc) client(t *testing.T, appPort string, flags ...string) *proc {
	t.Helper()
	args := append([]string{"http", appPort, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0"}, flags...)
	return startPorthole(t, interrupted, args...)
}

// admin runs `porthole admin ARGS` on the server's data and config and
// returns stdout, stderr and the exit code.
func (s *serverProc) admin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runPorthole(t, append(append([]string{"admin"}, args...), "--data-dir", s.dataDir, "--config", s.cfgFile)...)
}

// mustAdmin runs an admin command that must succeed and returns its last
// line of output.
func (s *serverProc) mustAdmin(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := s.admin(t, args...)
	if code != 0 {
		t.Fatalf("porthole admin %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return lastLine(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// visitorClient returns an HTTP client whose connections all go to addr,
// a server's public listener, whatever the URL's host (as wildcard DNS
// would send them), from localIP when it is not empty. It keeps up to
// idle connections per host (net/http's default when 0) until the test
// ends.
func visitorClient(t *testing.T, addr, localIP string, idle int, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: idle,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// serveApp serves srv, a local app, on a loopback port until the test
// ends and returns its address.
func serveApp(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// portOf returns the port of a host:port address.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	pollFor(t, what, within, 100*time.Millisecond, cond)
}

// pollFor polls cond every interval until it holds, failing the test
// after within.
func pollFor(t *testing.T, what string, within, interval time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(interval)
	}
}

// postgresURL returns $PORTHOLE_TEST_POSTGRES, or skips the test when it
// is not set, except in CI, where what (the test) must run against
// PostgreSQL.
func postgresURL(t *testing.T, what string) string {
	t.Helper()
	u := os.Getenv("PORTHOLE_TEST_POSTGRES")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PORTHOLE_TEST_POSTGRES is not set; CI must run %s against PostgreSQL (see .ci/postgres.sh)", what)
		}
		t.Skip("PORTHOLE_TEST_POSTGRES not set")
	}
	return u
}
