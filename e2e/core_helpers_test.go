package e2e

import (
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The core tests drive the binary that TestMain builds once for the
// package (identityBin).

// forwardingRe is the operator contract's way to find a public URL: the
// first match of (https?|tcp)://[^ ]+ on a line that starts with Forwarding.
var forwardingRe = regexp.MustCompile(`(https?|tcp)://[^ ]+`)

// coreProc is one porthole process with its output captured.
type coreProc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

type coreWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w coreWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// coreStart runs the binary with args; it is stopped when the test ends.
func coreStart(t *testing.T, args ...string) *coreProc {
	t.Helper()
	p := &coreProc{t: t, args: args, done: make(chan struct{})}
	p.cmd = exec.Command(identityBin, args...)
	p.cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=")
	p.cmd.Stdout = coreWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = coreWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("porthole %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.out(), p.errOut())
		}
	})
	return p
}

// coreRun runs the binary to completion and returns stdout, stderr and the
// exit code.
func coreRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, identityBin, args...)
	cmd.Env = append(os.Environ(), "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=", "PORTHOLE_SERVER=")
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

func (p *coreProc) out() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

func (p *coreProc) errOut() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// forwardingURLs waits until the process has printed n Forwarding lines
// and returns their URLs, in order.
func (p *coreProc) forwardingURLs(n int) []string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var urls []string
		for _, line := range strings.Split(p.out(), "\n") {
			if strings.HasPrefix(line, "Forwarding") {
				if u := forwardingRe.FindString(line); u != "" {
					urls = append(urls, u)
				}
			}
		}
		if len(urls) >= n {
			return urls
		}
		select {
		case <-p.done:
			p.t.Fatalf("porthole %s exited (%v) after %d of %d Forwarding lines", strings.Join(p.args, " "), p.err, len(urls), n)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("porthole %s printed %d of %d Forwarding lines in 30s", strings.Join(p.args, " "), len(urls), n)
		}
	}
}

// signal sends sig and returns the exit code, failing if the process does
// not exit within timeout.
func (p *coreProc) signal(sig os.Signal, timeout time.Duration) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	return p.exitCode(timeout)
}

func (p *coreProc) exitCode(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("porthole %s did not exit within %s", strings.Join(p.args, " "), timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 0
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// coreServer is a `porthole server --no-auth` process on loopback ports.
type coreServer struct {
	*coreProc
	args                            []string
	httpAddr, tunnelAddr, adminAddr string
	dataDir                         string
}

func startCoreServer(t *testing.T, extra ...string) *coreServer {
	t.Helper()
	s := &coreServer{httpAddr: freeAddr(t), tunnelAddr: freeAddr(t), adminAddr: freeAddr(t), dataDir: t.TempDir()}
	s.args = append([]string{"server", "--no-auth",
		"--http-addr", s.httpAddr, "--tunnel-addr", s.tunnelAddr, "--admin-addr", s.adminAddr,
		"--data-dir", s.dataDir}, extra...)
	s.start(t)
	return s
}

// start runs (or reruns) the server with the same arguments and waits for
// its health check.
func (s *coreServer) start(t *testing.T) {
	t.Helper()
	s.coreProc = coreStart(t, s.args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.adminAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("server exited (%v):\n%s", s.err, s.errOut())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy within 30s:\n%s", s.errOut())
		}
	}
}

func (s *coreServer) wsURL() string { return "ws://" + s.tunnelAddr }

// visitor returns an HTTP client that reaches the server's public listener
// for any host name, as wildcard DNS would.
func (s *coreServer) visitor(t *testing.T) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, s.httpAddr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// get fetches url as a visitor: status and body, or an error.
func (s *coreServer) get(t *testing.T, url string) (int, string, error) {
	resp, err := s.visitor(t).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitBody polls url until it answers 200 with body.
func (s *coreServer) waitBody(t *testing.T, url, body string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		status, got, err := s.get(t, url)
		if err == nil && status == 200 && got == body {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want 200 %q within %s, last got %d %q %v", url, body, within, status, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// coreApp is a local HTTP app answering with its name; it returns the
// port it listens on.
func coreApp(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func writeCoreFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func coreDescribe(code int, stdout, stderr string) string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
}
