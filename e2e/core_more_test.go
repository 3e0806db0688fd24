package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoreDemo: `porthole demo` alone gives a URL that answers.
func TestCoreDemo(t *testing.T) {
	httpAddr := freeAddr(t)
	demo := startPorthole(t, killed, "demo", "--http-addr", httpAddr, "--tunnel-addr", freeAddr(t),
		"--admin-addr", freeAddr(t), "--inspect-addr", freeAddr(t))
	url := demo.forwardingURLs(t, 1)[0]
	s := &serverProc{httpAddr: httpAddr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body, err := s.get(t, url)
		if err == nil && status == 200 && len(body) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo URL %s: %d %q %v", url, status, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := demo.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Errorf("demo exit code on SIGTERM: %d", code)
	}
}

func TestCoreVersion(t *testing.T) {
	out, errOut, code := runPorthole(t, "version")
	if code != 0 || !strings.HasPrefix(out, "porthole ") {
		t.Fatalf("porthole version: %s", coreDescribe(code, out, errOut))
	}
}

// TestCoreTCP: `porthole tcp PORT` prints a tcp:// Forwarding line whose
// port carries raw bytes; --remote-port outside the range is final.
func TestCoreTCP(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	_, pub, _ := net.SplitHostPort(freeAddr(t))
	srv := startCoreServer(t, "--tcp-ports", pub+"-"+pub)
	cl := startPorthole(t, killed, "tcp", echoPort, "--server", srv.wsURL(), "--inspect-addr", freeAddr(t))
	url := cl.forwardingURLs(t, 1)[0]
	if url != "tcp://localhost:"+pub {
		t.Fatalf("tcp Forwarding URL %q, want tcp://localhost:%s", url, pub)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+pub)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping over tcp"))
	buf := make([]byte, len("ping over tcp"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping over tcp" {
		t.Fatalf("echo through the tcp tunnel: %q %v", buf, err)
	}

	out, errOut, code := runPorthole(t, "tcp", echoPort, "--remote-port", "1", "--server", srv.wsURL(), "--inspect-addr", freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "outside") {
		t.Fatalf("--remote-port outside the range: %s", coreDescribe(code, out, errOut))
	}
}

// TestCoreJSONLogsAndFlagOrder: --log-format json makes every log line a
// JSON object, and flags work before the positional TARGET too.
func TestCoreJSONLogsAndFlagOrder(t *testing.T) {
	srv := startCoreServer(t, "--log-format", "json")
	appPort := nameApp(t, "json app")
	cl := startPorthole(t, killed, "--log-format", "json", "http", "--server", srv.wsURL(), "--inspect-addr", freeAddr(t), appPort)
	url := cl.forwardingURLs(t, 1)[0]
	srv.waitBody(t, url, "json app", 10*time.Second)
	// Give the access log line a moment to be written.
	time.Sleep(200 * time.Millisecond)
	for name, p := range map[string]*proc{"server": srv.proc, "client": cl} {
		lines := 0
		var sawRequest bool
		for _, line := range strings.Split(strings.TrimSpace(p.errOut()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("%s log line is not JSON: %q", name, line)
				continue
			}
			lines++
			if rec["msg"] == "request" && rec["status"] == float64(http.StatusOK) && rec["request_id"] != nil {
				sawRequest = true
			}
		}
		if lines == 0 || !sawRequest {
			t.Errorf("%s: %d JSON log lines, request line seen: %v", name, lines, sawRequest)
		}
	}
}
