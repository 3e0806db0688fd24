package harness

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

var forwarding = regexp.MustCompile(`(?m)^Forwarding (https?://[^ ]+)`)

// StartClient runs `porthole http TARGET` against s, with key unless it
// is empty and args added, and returns the process and the tunnel's
// hostname.
func StartClient(dir, name string, s *Server, target, key string, args ...string) (*procs.Proc, string, error) {
	a := []string{"http", target, "--server", s.TunnelURL(), "--inspect-addr", "127.0.0.1:0"}
	if key != "" {
		a = append(a, "--api-key", key)
	}
	p, err := StartProc(dir, "client-"+name, s.Bin, append(a, args...)...)
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

// StartApp serves h on a loopback port in this process.
func StartApp(h http.Handler) (port int, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return ln.Addr().(*net.TCPAddr).Port, func() { srv.Close() }, nil
}

// Visitor returns an HTTP client that sends every request to the public
// listener at addr, whatever the URL's host (as DNS for *.domain would),
// keeping up to conns connections alive.
func Visitor(addr string, conns int) *http.Client {
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

// Drain reads and discards a body, returning the bytes read.
func Drain(r io.Reader) int64 {
	n, _ := io.Copy(io.Discard, r)
	return n
}
