package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/transport"
)

// Credentials and secrets the access tests configure; none may show up in
// a log line of the server or of a client.
const (
	accAlicePW  = "Alice-pw-7f3e91c2"
	accBobPW    = "Bob-pw-0b5d22aa"
	accCarolPW  = "Carol-pw-9a41c6e0"
	accHeaderPW = "hdr-secret-5c8e17"
)

func accBasic(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestAccess runs visitor access control and header rules end to end:
// the rules are given to `porthole http|tcp|start`, and the server
// enforces them before anything reaches the client.
func TestAccess(t *testing.T) {
	tcpPort := freePort(t)
	s := startPoolServer(t, "--log-level", "debug", "--tcp-ports", fmt.Sprintf("%d-%d", tcpPort, tcpPort))
	v1 := poolVisitor(t, s.httpAddr, "127.0.0.1")
	v2 := poolVisitor(t, s.httpAddr, "127.0.0.2")
	tcpAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(tcpPort))
	var procs []*proc
	client := func(t *testing.T, app string, flags ...string) *proc {
		p := s.client(t, app, append([]string{"--log-level", "debug"}, flags...)...)
		procs = append(procs, p)
		return p
	}
	// expect checks a visitor request's status, and that a refusal did
	// not come from the app.
	expect := func(t *testing.T, what string, r poolResult, status int) {
		t.Helper()
		if r.err != nil || r.status != status {
			t.Fatalf("%s: %s, want %d", what, r, status)
		}
		if code := r.header.Get("X-Porthole-Error"); status >= 400 && !strings.HasPrefix(code, "access_denied_") && !strings.HasPrefix(code, "basic_auth_") {
			t.Fatalf("%s: refusal %q (X-Porthole-Error %q) is not the server's access control", what, r.body, code)
		}
	}

	t.Run("BasicAuth", func(t *testing.T) {
		app := startPoolApp(t, "A")
		url := client(t, app.port, "--subdomain", "locked",
			"--basic-auth", "alice:"+accAlicePW, "--basic-auth", "bob:"+accBobPW).forwarding(t)
		for _, tc := range []struct {
			what string
			hdr  []string
		}{
			{"no credentials", nil},
			{"wrong password", []string{accBasic("alice", "nope")}},
			{"another user's password", []string{accBasic("bob", accAlicePW)}},
			{"password with a suffix", []string{accBasic("alice", accAlicePW+"x")}},
			{"unknown user", []string{accBasic("eve", accAlicePW)}},
			{"empty user", []string{accBasic("", accAlicePW)}},
			{"bearer token", []string{"Authorization: Bearer " + accAlicePW}},
			{"malformed basic", []string{"Authorization: Basic !!!"}},
		} {
			r := poolDo(v1, http.MethodGet, url, "", tc.hdr...)
			expect(t, tc.what, r, http.StatusUnauthorized)
			if wa := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Basic ") || !strings.Contains(wa, "realm=") {
				t.Fatalf("%s: WWW-Authenticate %q", tc.what, wa)
			}
		}
		expect(t, "alice", poolDo(v1, http.MethodGet, url, "", accBasic("alice", accAlicePW)), 200)
		expect(t, "bob", poolDo(v1, http.MethodPost, url, "data", accBasic("bob", accBobPW)), 200)

		// Guessing is throttled per address: ten wrong passwords pass as
		// 401, then 429 with Retry-After; another address is unaffected.
		guesser := poolVisitor(t, s.httpAddr, "127.0.0.3")
		for i := 0; i < 10; i++ {
			expect(t, "guess", poolDo(guesser, http.MethodGet, url, "", accBasic("alice", fmt.Sprint("guess", i))), http.StatusUnauthorized)
		}
		r := poolDo(guesser, http.MethodGet, url, "", accBasic("alice", "guess-again"))
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.header.Get("X-Porthole-Error") != "visitor_access_failures_per_ip" {
			t.Fatalf("the 11th wrong password in a row: %s (Retry-After %q, X-Porthole-Error %q), want 429 from the guessing throttle",
				r, r.header.Get("Retry-After"), r.header.Get("X-Porthole-Error"))
		}
		// Out of tries, the right password gets 429 too: guessing on
		// cannot tell a hit from a miss.
		r = poolDo(guesser, http.MethodGet, url, "", accBasic("alice", accAlicePW))
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Fatalf("the right password from a throttled address: %s, want 429 with Retry-After", r)
		}
		expect(t, "alice from another address", poolDo(v1, http.MethodGet, url, "", accBasic("alice", accAlicePW)), 200)
		if n := app.hits.Load(); n != 3 {
			t.Fatalf("the app saw %d requests; want only the 3 with valid credentials", n)
		}
		// Right passwords cost no tries: a page of 30 requests with the
		// password, after 8 misses, all pass.
		for i := 0; i < 30; i++ {
			expect(t, fmt.Sprint("alice, request ", i), poolDo(v1, http.MethodGet, url, "", accBasic("alice", accAlicePW)), 200)
		}
		app.hits.Add(-30)
		// The tunnel's password is the tunnel's: the app does not see the
		// visitor's Authorization header, unless the tunnel passes it on.
		expect(t, "alice", poolDo(v1, http.MethodGet, url+"/headers", "", accBasic("alice", accAlicePW)), 200)
		if got := app.lastHeaders().Values("Authorization"); len(got) > 0 {
			t.Fatalf("the app got the tunnel's password: Authorization %q", got)
		}
		stripped := client(t, app.port, "--subdomain", "locked-forwarded", "--basic-auth", "alice:"+accAlicePW,
			"--basic-auth-forward").forwarding(t)
		expect(t, "alice, header forwarded", poolDo(v1, http.MethodGet, stripped+"/headers", "", accBasic("alice", accAlicePW)), 200)
		if got := app.lastHeaders().Get("Authorization"); got != strings.TrimPrefix(accBasic("alice", accAlicePW), "Authorization: ") {
			t.Fatalf("with --basic-auth-forward the app got Authorization %q", got)
		}
		stripped = client(t, app.port, "--subdomain", "locked-stripped", "--basic-auth", "alice:"+accAlicePW,
			"--basic-auth-forward", "--request-header-remove", "Authorization").forwarding(t)
		expect(t, "alice, header removed", poolDo(v1, http.MethodGet, stripped+"/headers", "", accBasic("alice", accAlicePW)), 200)
		if got := app.lastHeaders().Values("Authorization"); len(got) > 0 {
			t.Fatalf("the app got Authorization %q although a rule removes it", got)
		}
	})

	t.Run("SpoofedAddressHeaders", func(t *testing.T) {
		app := startPoolApp(t, "A")
		url := client(t, app.port, "--subdomain", "spoofed").forwarding(t)
		expect(t, "spoofing visitor", poolDo(v2, http.MethodGet, url+"/headers", "",
			"X-Real-Ip: 10.9.9.9", "True-Client-Ip: 10.9.9.9", "Forwarded: for=10.9.9.9", "X-Forwarded-For: 10.9.9.9",
			"Cf-Connecting-Ip: 10.9.9.9", "X-Client-Ip: 10.9.9.9"), 200)
		h := app.lastHeaders()
		for name, want := range map[string]string{
			"X-Real-Ip": "127.0.0.2", "X-Forwarded-For": "127.0.0.2", "True-Client-Ip": "", "Cf-Connecting-Ip": "", "X-Client-Ip": "",
		} {
			if got := strings.Join(h.Values(name), ","); got != want {
				t.Errorf("%s reached the app as %q, want %q", name, got, want)
			}
		}
		if f := h.Get("Forwarded"); !strings.HasPrefix(f, "for=127.0.0.2;") || strings.Contains(f, "10.9.9.9") {
			t.Errorf("Forwarded reached the app as %q, want the server's view (for=127.0.0.2)", f)
		}
	})

	t.Run("CIDR", func(t *testing.T) {
		app := startPoolApp(t, "A")
		allow := client(t, app.port, "--subdomain", "allowlist", "--allow-cidr", "127.0.0.1/32").forwarding(t)
		deny := client(t, app.port, "--subdomain", "denylist", "--deny-cidr", "127.0.0.2").forwarding(t)
		both := client(t, app.port, "--subdomain", "both", "--allow-cidr", "127.0.0.0/8", "--deny-cidr", "127.0.0.2/31").forwarding(t)
		expect(t, "allowed address", poolDo(v1, http.MethodGet, allow, ""), 200)
		expect(t, "address outside the allow list", poolDo(v2, http.MethodGet, allow, ""), 403)
		expect(t, "address outside the allow list, claiming another in X-Forwarded-For",
			poolDo(v2, http.MethodGet, allow, "", "X-Forwarded-For: 127.0.0.1", "X-Real-Ip: 127.0.0.1", "Forwarded: for=127.0.0.1"), 403)
		expect(t, "address not denied", poolDo(v1, http.MethodGet, deny, ""), 200)
		expect(t, "denied address", poolDo(v2, http.MethodGet, deny, ""), 403)
		expect(t, "denied address with a body", poolDo(v2, http.MethodPost, deny, "payload"), 403)
		expect(t, "allowed network, not denied", poolDo(v1, http.MethodGet, both, ""), 200)
		expect(t, "allowed network but denied (deny wins)", poolDo(v2, http.MethodGet, both, ""), 403)
		if n := app.hits.Load(); n != 3 {
			t.Fatalf("the app saw %d requests; want only the 3 admitted", n)
		}
	})

	t.Run("RequireHeader", func(t *testing.T) {
		app := startPoolApp(t, "A")
		url := client(t, app.port, "--subdomain", "keyed", "--require-header", "X-Key: "+accHeaderPW).forwarding(t)
		expect(t, "no header", poolDo(v1, http.MethodGet, url, ""), 403)
		expect(t, "wrong value", poolDo(v1, http.MethodGet, url, "", "X-Key: nope"), 403)
		expect(t, "value with a suffix", poolDo(v1, http.MethodGet, url, "", "X-Key: "+accHeaderPW+"0"), 403)
		expect(t, "empty value", poolDo(v1, http.MethodGet, url, "", "X-Key:"), 403)
		expect(t, "right value", poolDo(v1, http.MethodGet, url, "", "X-Key: "+accHeaderPW), 200)
		expect(t, "right value, name in lower case", poolDo(v1, http.MethodGet, url, "", "x-key: "+accHeaderPW), 200)
		if n := app.hits.Load(); n != 2 {
			t.Fatalf("the app saw %d requests; want only the 2 with the header", n)
		}
	})

	t.Run("HeaderRules", func(t *testing.T) {
		app := startPoolApp(t, "A")
		url := client(t, app.port, "--subdomain", "rules",
			"--request-header-add", "X-From: porthole", "--request-header-add", "X-Tag: one",
			"--request-header-remove", "X-Secret", "--request-header-remove", "cookie",
			"--response-header-add", "X-Frame-Options: DENY",
			"--response-header-remove", "Server", "--response-header-remove", "x-powered-by").forwarding(t)
		r := poolDo(v1, http.MethodGet, url+"/headers", "", "X-Secret: leak", "Cookie: a=b", "X-Other: kept", "X-Tag: visitor")
		expect(t, "request", r, 200)
		checkHeaderRules(t, app.lastHeaders(), r.header, "porthole", "DENY")
		if tags := app.lastHeaders().Values("X-Tag"); len(tags) != 2 {
			t.Fatalf("X-Tag at the app: %q; want the visitor's and the added one", tags)
		}
	})

	t.Run("TCP", func(t *testing.T) {
		echo := startPoolEcho(t, "echo")
		p := startPorthole(t, interrupted, "tcp", echo.port, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0",
			"--remote-port", fmt.Sprint(tcpPort), "--allow-cidr", "127.0.0.1")
		procs = append(procs, p)
		p.forwarding(t)
		if g, err := poolTCPGreeting(tcpAddr, "127.0.0.1"); err != nil || g != "echo" {
			t.Fatalf("allowed address: %q %v", g, err)
		}
		if g, err := poolTCPGreeting(tcpAddr, "127.0.0.2"); err == nil {
			t.Fatalf("address outside the allow list got through: %q", g)
		}
		if n := echo.accepted.Load(); n != 1 {
			t.Fatalf("the app accepted %d connections; want only the allowed one", n)
		}
		p.stop()
	})

	t.Run("ConfigFile", func(t *testing.T) {
		app := startPoolApp(t, "A")
		echo := startPoolEcho(t, "echo")
		cfg := filepath.Join(t.TempDir(), "porthole.toml")
		writeAccFile(t, cfg, fmt.Sprintf(`
[tunnels.web]
proto = "http"
addr = %q
subdomain = "fromtoml"
basic_auth = ["carol:%s", "dave:other-pw"]
allow_cidr = ["127.0.0.1/32"]
require_header = ["X-Key: %s"]
request_header_add = ["X-From: toml"]
request_header_remove = ["X-Secret", "Cookie"]
response_header_add = ["X-Frame-Options: SAMEORIGIN"]
response_header_remove = ["Server", "X-Powered-By"]

[tunnels.raw]
proto = "tcp"
addr = %q
remote_port = %d
deny_cidr = ["127.0.0.2/32"]
`, app.port, accCarolPW, accHeaderPW, echo.port, tcpPort))
		p := startPorthole(t, interrupted, "start", "--config", cfg, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0", "--log-level", "debug")
		procs = append(procs, p)
		lines := p.wait(t, p.out, regexp.MustCompile(`(?s)Forwarding .*\nForwarding [^\n]*\n`), 20*time.Second)[0]
		urls := map[string]bool{}
		for _, u := range forwardingURLsIn(lines) {
			urls[u] = true
		}
		var url string
		for u := range urls {
			if strings.HasPrefix(u, "http://fromtoml.tun.test:") {
				url = u
			}
		}
		if url == "" || !urls[fmt.Sprintf("tcp://tun.test:%d", tcpPort)] {
			t.Fatalf("Forwarding lines:\n%s", lines)
		}
		carol, key := accBasic("carol", accCarolPW), "X-Key: "+accHeaderPW
		expect(t, "no credentials", poolDo(v1, http.MethodGet, url+"/headers", "", key), 401)
		expect(t, "no header", poolDo(v1, http.MethodGet, url+"/headers", "", carol), 403)
		expect(t, "address outside the allow list", poolDo(v2, http.MethodGet, url+"/headers", "", carol, key), 403)
		r := poolDo(v1, http.MethodGet, url+"/headers", "", carol, key, "X-Secret: leak", "Cookie: a=b", "X-Other: kept")
		expect(t, "everything right", r, 200)
		checkHeaderRules(t, app.lastHeaders(), r.header, "toml", "SAMEORIGIN")
		if n := app.hits.Load(); n != 1 {
			t.Fatalf("the app saw %d requests; want 1", n)
		}
		if g, err := poolTCPGreeting(tcpAddr, "127.0.0.1"); err != nil || g != "echo" {
			t.Fatalf("tcp, address not denied: %q %v", g, err)
		}
		if g, err := poolTCPGreeting(tcpAddr, "127.0.0.2"); err == nil {
			t.Fatalf("tcp, denied address got through: %q", g)
		}
		if n := echo.accepted.Load(); n != 1 {
			t.Fatalf("the tcp app accepted %d connections; want 1", n)
		}
		p.stop()
	})

	t.Run("BadRulesClient", func(t *testing.T) {
		app := startPoolApp(t, "A")
		for _, flags := range [][]string{
			{"--allow-cidr", "10.0.0.0/33"},
			{"--deny-cidr", "nonsense"},
			{"--allow-cidr", ""},
			{"--require-header", "X-Key"},
			{"--require-header", ": value"},
			{"--request-header-add", "NoColon"},
			{"--response-header-add", "Bad Name: x"},
			{"--request-header-remove", "Bad Name"},
			{"--basic-auth", "nocolon" + accAlicePW},
			{"--basic-auth", ":" + accAlicePW},
			{"--pool-strategy", "fastest"},
			{"--health-path", "ok"},
		} {
			args := append([]string{"http", app.port, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0"}, flags...)
			out, errOut, code := runPorthole(t, args...)
			if code != 2 || strings.TrimSpace(errOut) == "" || strings.Contains(out, "Forwarding") {
				t.Errorf("porthole http %v: want a usage error (exit 2) with a message: %s", flags, coreDescribe(code, out, errOut))
			}
			if strings.Contains(errOut, accAlicePW) {
				t.Errorf("porthole http %v: the message shows the password: %s", flags, errOut)
			}
		}
		cfg := filepath.Join(t.TempDir(), "bad.toml")
		writeAccFile(t, cfg, fmt.Sprintf("[tunnels.web]\nproto = \"http\"\naddr = %q\nallow_cidr = [\"300.1.1.1\"]\n", app.port))
		out, errOut, code := runPorthole(t, "start", "--config", cfg, "--server", s.wsURL(), "--inspect-addr", "127.0.0.1:0")
		if code != 2 || !strings.Contains(errOut, "300.1.1.1") {
			t.Errorf("start with a bad allow_cidr: want exit 2 naming it: %s", coreDescribe(code, out, errOut))
		}
		if app.hits.Load() != 0 {
			t.Errorf("the app saw requests")
		}
	})

	t.Run("BadRulesServer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		mux, err := transport.Dial(ctx, s.wsURL(), transport.DialOptions{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer mux.Close()
		ctrl, err := mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		ctrl.SetDeadline(time.Now().Add(15 * time.Second))
		w, rd := protocol.NewWriter(ctrl), protocol.NewReader(ctrl)
		if err := w.Write(&protocol.Hello{Version: protocol.Version, ClientVersion: "e2e"}); err != nil {
			t.Fatal(err)
		}
		if _, err := protocol.Expect[*protocol.Welcome](rd); err != nil {
			t.Fatal(err)
		}
		many := make([]string, protocol.MaxAccessRules+1)
		for i := range many {
			many[i] = fmt.Sprintf("10.0.%d.0/24", i)
		}
		for i, b := range []protocol.Bind{
			{Access: &protocol.Access{AllowCIDR: []string{"nope"}}},
			{Access: &protocol.Access{DenyCIDR: []string{"10.0.0.0/99"}}},
			{Access: &protocol.Access{AllowCIDR: many}},
			{Access: &protocol.Access{BasicAuth: []string{"nocolon"}}},
			{Access: &protocol.Access{BasicAuth: []string{":" + accAlicePW}}},
			{Access: &protocol.Access{RequireHeader: []string{"X-Key"}}},
			{Access: &protocol.Access{RequireHeader: []string{"Bad Name: v"}}},
			{Headers: &protocol.HeaderRules{RequestAdd: []string{"NoColon"}}},
			{Headers: &protocol.HeaderRules{ResponseAdd: []string{"X-Bad: line\nbreak"}}},
			{Headers: &protocol.HeaderRules{RequestRemove: []string{"bad name"}}},
			{Headers: &protocol.HeaderRules{ResponseRemove: []string{""}}},
			{Pool: &protocol.Pool{Strategy: "fastest"}, Subdomain: "strategy"},
			{Pool: &protocol.Pool{}},
		} {
			b.ID = uint32(i + 1)
			b.Kind = protocol.KindHTTP
			if err := w.Write(&b); err != nil {
				t.Fatal(err)
			}
			m, err := rd.Read()
			if err != nil {
				t.Fatal(err)
			}
			e, ok := m.(*protocol.Error)
			if !ok || e.ID != b.ID || e.Code != protocol.CodeBadRequest || !e.Final || e.Message == "" {
				t.Errorf("bind %d (access %+v, headers %+v, pool %+v): got %#v; want a final bad_request", b.ID, b.Access, b.Headers, b.Pool, m)
			}
			if ok && strings.Contains(e.Message, accAlicePW) {
				t.Errorf("bind %d: the refusal shows the password: %s", b.ID, e.Message)
			}
		}
		// The session survives: a good bind with every rule works.
		w.Write(&protocol.Bind{ID: 99, Kind: protocol.KindHTTP, Subdomain: "raw-fine",
			Access:  &protocol.Access{BasicAuth: []string{"u:" + accAlicePW}, AllowCIDR: []string{"127.0.0.0/8", "::1"}, DenyCIDR: []string{"127.0.0.9"}, RequireHeader: []string{"X-Key: v"}},
			Headers: &protocol.HeaderRules{RequestAdd: []string{"X-A: 1"}, RequestRemove: []string{"X-B"}, ResponseAdd: []string{"X-C: 3"}, ResponseRemove: []string{"X-D"}}})
		if b, err := protocol.Expect[*protocol.Bound](rd); err != nil || b.ID != 99 {
			t.Fatalf("good bind after refusals: %+v %v", b, err)
		}
	})

	// Runs last: every process's log, at debug level, is free of the
	// credentials the tests used.
	t.Run("NoSecretsInLogs", func(t *testing.T) {
		secrets := []string{accAlicePW, accBobPW, accCarolPW, accHeaderPW}
		for _, sec := range []string{"alice:" + accAlicePW, "bob:" + accBobPW, "carol:" + accCarolPW} {
			secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(sec)))
		}
		logs := map[string]string{"server": s.errOut() + s.out()}
		for i, p := range procs {
			logs[fmt.Sprintf("client %d (%s)", i, strings.Join(p.args[:2], " "))] = p.errOut() + p.out()
		}
		for name, log := range logs {
			for _, sec := range secrets {
				if strings.Contains(log, sec) {
					t.Errorf("%s log contains the secret %q", name, sec)
				}
			}
		}
		if !strings.Contains(logs["server"], `"tunnel":"locked.tun.test"`) || !strings.Contains(logs["server"], `"level":"DEBUG"`) {
			t.Errorf("the server log has no debug lines or misses the basic-auth tunnel; is it the right log?")
		}
	})
}

// checkHeaderRules checks what the app received and what the visitor got
// through a tunnel whose rules add X-From (from) and remove X-Secret and
// Cookie from requests, and add X-Frame-Options (frame) and remove Server
// and X-Powered-By from responses.
func checkHeaderRules(t *testing.T, atApp, atVisitor http.Header, from, frame string) {
	t.Helper()
	if atApp == nil {
		t.Fatal("the app saw no /headers request")
	}
	if got := atApp.Get("X-From"); got != from {
		t.Errorf("X-From at the app: %q, want %q", got, from)
	}
	for _, h := range []string{"X-Secret", "Cookie"} {
		if v := atApp.Values(h); len(v) > 0 {
			t.Errorf("%s reached the app: %q", h, v)
		}
	}
	if atApp.Get("X-Other") != "kept" || atApp.Get("X-Forwarded-For") == "" {
		t.Errorf("other request headers did not reach the app: %v", atApp)
	}
	if got := atVisitor.Get("X-Frame-Options"); got != frame {
		t.Errorf("X-Frame-Options for the visitor: %q, want %q", got, frame)
	}
	for _, h := range []string{"Server", "X-Powered-By"} {
		if v := atVisitor.Values(h); len(v) > 0 {
			t.Errorf("%s reached the visitor: %q", h, v)
		}
	}
	if atVisitor.Get("X-Keep") != "kept" {
		t.Errorf("other response headers did not reach the visitor: %v", atVisitor)
	}
}

func writeAccFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
