package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The core tests drive the binary that TestMain builds once for the
// package (portholeBin); their processes are killed when a test ends.

// startCoreServer starts a `porthole server --no-auth` on loopback
// addresses picked beforehand, so that a test can start it again on
// them.
func startCoreServer(t *testing.T, extra ...string) *serverProc {
	t.Helper()
	return startServerAt(t, killed, 30*time.Second, append([]string{"--no-auth"}, extra...)...)
}

// visitor returns an HTTP client that reaches the server's public listener
// for any host name, as wildcard DNS would.
func (s *serverProc) visitor(t *testing.T) *http.Client {
	return visitorClient(t, s.httpAddr, "", 0, 20*time.Second)
}

// get fetches url as a visitor: status and body, or an error.
func (s *serverProc) get(t *testing.T, url string) (int, string, error) {
	resp, err := s.visitor(t).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitBody polls url until it answers 200 with body.
func (s *serverProc) waitBody(t *testing.T, url, body string, within time.Duration) {
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

// nameApp is a local HTTP app answering with its name; it returns the
// port it listens on.
func nameApp(t *testing.T, name string) string {
	t.Helper()
	return portOf(serveApp(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}))
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
