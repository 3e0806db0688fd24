package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlaintextCredentialRefused: an API key or token is not sent over
// ws:// to a host off this machine unless asked for; loopback is fine.
func TestPlaintextCredentialRefused(t *testing.T) {
	for _, tc := range []struct {
		server, key, token string
		insecure           bool
		wantErr            string
	}{
		{server: "ws://example.com:8080", key: "phk_x", wantErr: "--insecure-plaintext"},
		{server: "ws://10.0.0.5:8080", token: "t", wantErr: "token in clear text"},
		{server: "ws://[2001:db8::1]:8080", key: "phk_x", wantErr: "API key in clear text"},
		{server: "ws://127.0.0.1:8080", key: "phk_x"},
		{server: "ws://127.9.9.9:8080", key: "phk_x"},
		{server: "ws://[::1]:8080", key: "phk_x"},
		{server: "ws://localhost:8080", key: "phk_x"},
		{server: "ws://app.localhost:8080", key: "phk_x"},
		{server: "wss://example.com", key: "phk_x"},
		{server: "ws://example.com:8080"}, // no credential
		{server: "ws://example.com:8080", key: "phk_x", insecure: true},
	} {
		cfg := DefaultConfig()
		cfg.Servers = []string{tc.server}
		cfg.APIKey, cfg.Token, cfg.InsecurePlaintext = tc.key, tc.token, tc.insecure
		err := cfg.Validate()
		switch {
		case tc.wantErr == "" && err != nil && strings.Contains(err.Error(), "clear text"):
			t.Errorf("%s key=%q token=%q insecure=%v: refused: %v", tc.server, tc.key, tc.token, tc.insecure, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s key=%q token=%q: got %v, want an error with %q", tc.server, tc.key, tc.token, err, tc.wantErr)
		}
	}
	if !PlaintextOffHost("ws://example.com") || PlaintextOffHost("ws://127.0.0.1") || PlaintextOffHost("wss://example.com") {
		t.Fatal("PlaintextOffHost disagrees with the table above")
	}
}

// TestPlaintextCredentialBinary runs the real binary. Requests to a
// remote host go through an HTTP proxy on loopback (HTTP_PROXY, which the
// client honours), so the test sees any byte the client would send, and
// nothing leaves the machine.
//   - Without --insecure-plaintext, ws://example.com with an API key is a
//     usage error (exit 2) naming the flag, and the proxy sees nothing.
//   - Loopback servers are accepted.
//   - With --insecure-plaintext the client starts, warns on stderr that
//     the key goes in clear text, and the proxy sees it sent.
func TestPlaintextCredentialBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "porthole")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/porthole").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	proxy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	seen := make(chan string, 16)
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					seen <- req.Host + " " + req.Header.Get("Authorization")
				}
				io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	const key = "phk_plaintext_test_key"
	env := append(os.Environ(), "HTTP_PROXY=http://"+proxy.Addr().String(), "HTTPS_PROXY=", "NO_PROXY=", "no_proxy=", "PORTHOLE_API_KEY=", "PORTHOLE_TOKEN=")
	run := func(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr, cmd.Stdout = &stderr, io.Discard
		return cmd, &stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, args := range [][]string{
		{"http", "3000", "--server", "ws://example.com:8080", "--api-key", key},
		{"http", "3000", "--server", "ws://example.com:8080", "--token", key},
		{"http", "3000", "--api-key", key, "--server", "ws://127.0.0.1:1", "--server", "ws://192.0.2.10:8081"},
	} {
		cmd, stderr := run(ctx, append(args, "--inspect-addr", "127.0.0.1:0")...)
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%v: %v, want exit status 2\n%s", args, err, stderr)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "--insecure-plaintext") || !strings.Contains(msg, "clear text") || strings.Contains(msg, key) {
			t.Fatalf("%v: the message should name --insecure-plaintext and not show the key:\n%s", args, msg)
		}
	}
	select {
	case r := <-seen:
		t.Fatalf("a refused client sent a request: %s", r)
	default:
	}

	// Loopback: accepted (it fails later, on the closed port, not on
	// the check).
	for _, srv := range []string{"ws://127.0.0.1:1", "ws://[::1]:1", "ws://localhost:1"} {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		cmd, stderr := run(c, "http", "3000", "--server", srv, "--api-key", key, "--inspect-addr", "127.0.0.1:0")
		cmd.Run()
		cancel()
		if strings.Contains(stderr.String(), "--insecure-plaintext") || cmd.ProcessState.ExitCode() == 2 {
			t.Fatalf("%s refused: exit %d\n%s", srv, cmd.ProcessState.ExitCode(), stderr)
		}
	}

	cmd, stderr := run(ctx, "http", "3000", "--server", "ws://example.com:8080", "--api-key", key, "--insecure-plaintext", "--inspect-addr", "127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	select {
	case r := <-seen:
		if !strings.HasPrefix(r, "example.com:8080 ") || !strings.Contains(r, key) {
			t.Fatalf("the proxy saw %q", r)
		}
	case <-ctx.Done():
		t.Fatalf("with --insecure-plaintext the client never connected\n%s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if msg := stderr.String(); !strings.Contains(msg, "CLEAR TEXT") || !strings.Contains(msg, "ws://example.com:8080") {
		t.Fatalf("with --insecure-plaintext: no loud warning on stderr:\n%s", msg)
	}
}
