package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCoreQuickstart is the README's first steps with the real binary:
// `porthole server --no-auth`, `porthole http PORT`, the printed URL
// answers, `porthole status` reports it, and SIGTERM ends both with 0.
func TestCoreQuickstart(t *testing.T) {
	srv := startCoreServer(t)
	appPort := nameApp(t, "hello from the app")
	inspect := freeAddr(t)
	cl := startPorthole(t, killed, "http", appPort, "--server", srv.wsURL(), "--inspect-addr", inspect)
	url := cl.forwardingURLs(t, 1)[0]
	_, port, _ := strings.Cut(srv.httpAddr, ":")
	if !regexp.MustCompile(`^http://[a-z0-9-]+\.localhost:` + port + `$`).MatchString(url) {
		t.Fatalf("Forwarding URL %q", url)
	}
	if line := firstForwardingLine(cl.out()); !strings.HasSuffix(line, "-> http://localhost:"+appPort) {
		t.Errorf("Forwarding line %q does not name the local target", line)
	}
	srv.waitBody(t, url+"/", "hello from the app", 10*time.Second)

	out, errOut, code := runPorthole(t, "status", "--inspect-addr", inspect)
	if code != 0 || !strings.Contains(out, url) || !strings.Contains(out, "online") {
		t.Fatalf("porthole status: %s", coreDescribe(code, out, errOut))
	}
	out, errOut, code = runPorthole(t, "status", "--json", "--inspect-addr", inspect)
	var st struct {
		State   string `json:"state"`
		Tunnels []struct {
			URL      string `json:"public_url"`
			Requests int    `json:"requests"`
		} `json:"tunnels"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("porthole status --json: %s", coreDescribe(code, out, errOut))
	}
	if st.State != "online" || len(st.Tunnels) != 1 || st.Tunnels[0].URL != url || st.Tunnels[0].Requests < 1 {
		t.Fatalf("status --json: %+v", st)
	}
	// A status query with nothing to ask fails clearly.
	if _, errOut, code := runPorthole(t, "status", "--inspect-addr", freeAddr(t)); code != 1 || !strings.Contains(errOut, "no porthole client") {
		t.Errorf("status with no client running: exit %d, %q", code, errOut)
	}

	if code := cl.signal(t, syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Errorf("client exit code on SIGTERM: %d\n%s", code, cl.errOut())
	}
	// The client released its name on the way out.
	if status, _, _ := srv.get(t, url); status != 404 {
		t.Errorf("after the client stopped its URL answers %d, want 404", status)
	}
	if code := srv.signal(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Errorf("server exit code on SIGTERM: %d\n%s", code, srv.errOut())
	}
}

func firstForwardingLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Forwarding") {
			return l
		}
	}
	return ""
}

// TestCoreStartSeveralTunnelsAndClients: `porthole start --config F` opens
// every [tunnels.NAME], and another client shares the server.
func TestCoreStartSeveralTunnelsAndClients(t *testing.T) {
	srv := startCoreServer(t)
	web, api, docs := nameApp(t, "web app"), nameApp(t, "api app"), nameApp(t, "docs app")
	cfg := writeCoreFile(t, "porthole.toml", fmt.Sprintf(`
servers = [%q]
inspect_addr = %q

[tunnels.web]
proto = "http"
addr = %q

[tunnels.api]
proto = "http"
addr = "localhost:%s"
subdomain = "my-api"
`, srv.wsURL(), freeAddr(t), web, api))
	one := startPorthole(t, killed, "start", "--config", cfg)
	urls := one.forwardingURLs(t, 2)
	two := startPorthole(t, killed, "http", docs, "--server", srv.wsURL(), "--inspect-addr", freeAddr(t))
	docsURL := two.forwardingURLs(t, 1)[0]

	byApp := map[string]string{"docs app": docsURL}
	for _, u := range urls {
		if strings.Contains(u, "://my-api.localhost:") {
			byApp["api app"] = u
		} else {
			byApp["web app"] = u
		}
	}
	if len(byApp) != 3 {
		t.Fatalf("URLs %v + %s: want one for each of web, api (as my-api) and docs", urls, docsURL)
	}
	for body, url := range byApp {
		srv.waitBody(t, url, body, 10*time.Second)
	}

	// Only the named tunnels start when names are given.
	three := startPorthole(t, killed, "start", "--config", cfg, "--server", srv.wsURL(), "--inspect-addr", freeAddr(t), "web")
	if got := three.forwardingURLs(t, 1); len(got) != 1 || strings.Contains(got[0], "my-api") {
		t.Fatalf("start web: %v", got)
	}
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(three.out(), "Forwarding"); n != 1 {
		t.Fatalf("start web printed %d Forwarding lines:\n%s", n, three.out())
	}
}

// TestCoreServerKilledAndRestarted: kill -9 the server, start it again on
// the same ports; the client, still running, reconnects and its URL
// answers again.
func TestCoreServerKilledAndRestarted(t *testing.T) {
	srv := startCoreServer(t)
	appPort := nameApp(t, "survivor")
	cl := startPorthole(t, killed, "http", appPort, "--server", srv.wsURL(), "--inspect-addr", freeAddr(t),
		"--reconnect-max", "1s")
	url := cl.forwardingURLs(t, 1)[0]
	srv.waitBody(t, url, "survivor", 10*time.Second)

	if code := srv.signal(t, syscall.SIGKILL, 10*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("server exit after SIGKILL: %d", code)
	}
	if status, _, err := srv.get(t, url); err == nil {
		t.Fatalf("the killed server still answered (%d)", status)
	}
	srv.restart(t)
	srv.waitBody(t, url, "survivor", 30*time.Second)
	select {
	case <-cl.done:
		t.Fatalf("the client exited during the restart: %v\n%s", cl.err, cl.errOut())
	default:
	}
	if got := cl.forwardingURLs(t, 1); got[len(got)-1] != url {
		t.Fatalf("the client printed a new URL %q, want %q", got[len(got)-1], url)
	}
}

func TestCoreConfigCheck(t *testing.T) {
	good := writeCoreFile(t, "server.toml", `
domain = "tunnel.example.com"
http_addr = ":8080"

[tunnel]
grace_period = "30s"
`)
	out, errOut, code := runPorthole(t, "config", "check", good)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("config check on a good file: %s", coreDescribe(code, out, errOut))
	}
	goodClient := writeCoreFile(t, "client.toml", `
servers = ["ws://localhost:8081"]
[tunnels.web]
proto = "http"
addr = "3000"
`)
	if out, errOut, code := runPorthole(t, "config", "check", goodClient); code != 0 || !strings.Contains(out, "client") {
		t.Fatalf("config check on a good client file: %s", coreDescribe(code, out, errOut))
	}

	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "domain = \"example.com\"\n\n[tunnel]\ngrace_priod = \"30s\"\n", ":4:"},
		{"bad value", "domain = \"example.com\"\nhttp_addr = 8080\n", ":2"},
		{"bad duration", "[tunnel]\ngrace_period = \"soon\"\n", ":2"},
		{"client unknown key", "servers = [\"ws://x:1\"]\n[tunnels.web]\nproto = \"http\"\naddr = \"3000\"\nport = 1\n", ":5:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := writeCoreFile(t, "bad.toml", tc.body)
			out, errOut, code := runPorthole(t, "config", "check", bad)
			if code == 0 || !strings.Contains(errOut, bad+tc.want) {
				t.Fatalf("want a non-zero exit and an error naming %s%s: %s", bad, tc.want, coreDescribe(code, out, errOut))
			}
		})
	}
	// A file that decodes but fails validation says why.
	invalid := writeCoreFile(t, "invalid.toml", "[tunnel]\nheartbeat = \"1m\"\n")
	if out, errOut, code := runPorthole(t, "config", "check", invalid); code == 0 || !strings.Contains(errOut, "heartbeat") {
		t.Fatalf("invalid values: %s", coreDescribe(code, out, errOut))
	}
}

// TestCoreExitCodes: 2 for usage errors, 1 for a final error from the
// server with its reason on stderr.
func TestCoreExitCodes(t *testing.T) {
	for _, args := range [][]string{
		{"http", "--no-such-flag", "3000"},
		{"http", "not-a-port"},
		{"http", "99999"},
		{"http"},
		{"tcp", "http://localhost:80"},
		{"server", "--bogus"},
	} {
		out, errOut, code := runPorthole(t, args...)
		if code != 2 || strings.TrimSpace(errOut) == "" {
			t.Errorf("porthole %s: want exit 2 with a message: %s", strings.Join(args, " "), coreDescribe(code, out, errOut))
		}
	}

	srv := startCoreServer(t)
	appPort := nameApp(t, "app")
	for _, tc := range []struct {
		sub, want string
	}{{"www", "reserved"}, {"admin", "reserved"}} {
		start := time.Now()
		out, errOut, code := runPorthole(t, "http", appPort, "--server", srv.wsURL(), "--subdomain", tc.sub, "--inspect-addr", freeAddr(t))
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Contains(out, "Forwarding") {
			t.Errorf("--subdomain %s: want exit 1 saying %q: %s", tc.sub, tc.want, coreDescribe(code, out, errOut))
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("--subdomain %s took %s: final errors must not be retried", tc.sub, d)
		}
	}
	// Taken by a running client: also final.
	holder := startPorthole(t, killed, "http", appPort, "--server", srv.wsURL(), "--subdomain", "mine", "--inspect-addr", freeAddr(t))
	holder.forwardingURLs(t, 1)
	out, errOut, code := runPorthole(t, "http", appPort, "--server", srv.wsURL(), "--subdomain", "mine", "--inspect-addr", freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "in use") {
		t.Errorf("taken subdomain: %s", coreDescribe(code, out, errOut))
	}
	if code := holder.signal(t, os.Interrupt, 15*time.Second); code != 0 {
		t.Errorf("client exit code on SIGINT: %d", code)
	}
}
