package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestGoAwayMovesClientFirst: SIGTERM on a server with a request in
// flight. The client, with a second --server, opens a session there and
// its tunnel answers at the second server while the first still drains
// (it cannot exit: the request is held open); then the request completes
// in full and the first server exits 0.
func TestGoAwayMovesClientFirst(t *testing.T) {
	a, b := startCoreServer(t), startCoreServer(t)
	app := startMoveApp(t)
	c := startPorthole(t, interrupted, "http", app.port, "--server", a.wsURL(), "--server", b.wsURL(),
		"--subdomain", "mover", "--inspect-addr", "127.0.0.1:0", "--reconnect-max", "1s")
	c.forwarding(t)
	a.waitBody(t, a.tunnelURL("mover"), "app", 10*time.Second)

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, body, err := a.get(t, a.tunnelURL("mover")+"/slow")
		done <- result{status, body, err}
	}()
	<-app.started
	a.term(t)
	// The new session is up while the old server still waits for the
	// request in flight.
	b.waitBody(t, b.tunnelURL("mover"), "app", 15*time.Second)
	if a.exited() {
		t.Fatal("the first server exited before the client moved")
	}
	if st := c.status(t); st.linksOn(b.wsURL()) != 1 {
		t.Errorf("client status: want its link online at %s, got %+v", b.wsURL(), st)
	}
	app.release()
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "slow done" {
		t.Fatalf("request in flight during SIGTERM: %d %q %v", r.status, r.body, r.err)
	}
	if code := a.exitCode(t, 20*time.Second); code != 0 {
		t.Errorf("server exit code %d, want 0", code)
	}
	if c.exited() {
		t.Fatal("client exited")
	}
	if !strings.Contains(c.errOut(), "moving to another server") {
		t.Errorf("client did not log its move:\n%s", c.errOut())
	}
	b.waitBody(t, b.tunnelURL("mover"), "app", 5*time.Second)
}

// TestGoAwaySingleServer: with one --server, SIGTERM lets the request in
// flight finish, and the client reconnects to the same address once the
// server is back, getting the same URL.
func TestGoAwaySingleServer(t *testing.T) {
	a := startCoreServer(t)
	app := startMoveApp(t)
	c := startPorthole(t, interrupted, "http", app.port, "--server", a.wsURL(),
		"--subdomain", "solo", "--inspect-addr", "127.0.0.1:0", "--reconnect-max", "1s")
	c.forwarding(t)
	a.waitBody(t, a.tunnelURL("solo"), "app", 10*time.Second)
	done := make(chan string, 1)
	go func() {
		status, body, err := a.get(t, a.tunnelURL("solo")+"/slow")
		if err != nil {
			body = err.Error()
		} else if status != 200 {
			body = "status " + body
		}
		done <- body
	}()
	<-app.started
	a.term(t)
	time.Sleep(300 * time.Millisecond)
	if a.exited() {
		t.Fatal("server exited with a request in flight")
	}
	app.release()
	if got := <-done; got != "slow done" {
		t.Fatalf("request in flight during SIGTERM: %q", got)
	}
	if code := a.exitCode(t, 20*time.Second); code != 0 {
		t.Errorf("server exit code %d, want 0", code)
	}
	if strings.Contains(c.errOut(), "moving to another server") {
		t.Error("a client with one server moved")
	}
	a.restart(t)
	a.waitBody(t, a.tunnelURL("solo"), "app", 20*time.Second)
}

// TestLinksBothServersServe: with --links 2 both servers serve the
// tunnel; SIGKILL of one loses nothing at the other, and the client
// re-opens the lost link once the server is back.
func TestLinksBothServersServe(t *testing.T) {
	a, b := startCoreServer(t), startCoreServer(t)
	app := startMoveApp(t)
	c := startPorthole(t, interrupted, "http", app.port, "--server", a.wsURL(), "--server", b.wsURL(),
		"--links", "2", "--subdomain", "both", "--inspect-addr", "127.0.0.1:0", "--reconnect-max", "1s")
	c.forwarding(t)
	a.waitBody(t, a.tunnelURL("both"), "app", 10*time.Second)
	b.waitBody(t, b.tunnelURL("both"), "app", 10*time.Second)
	waitFor(t, "one link at each server", 10*time.Second, func() bool {
		st := c.status(t)
		return st.linksOn(a.wsURL()) == 1 && st.linksOn(b.wsURL()) == 1
	})
	a.kill(t)
	for range 20 {
		if status, body, err := b.get(t, b.tunnelURL("both")); err != nil || status != 200 || body != "app" {
			t.Fatalf("at the remaining server after SIGKILL of the other: %d %q %v", status, body, err)
		}
	}
	a.restart(t)
	a.waitBody(t, a.tunnelURL("both"), "app", 20*time.Second)
	waitFor(t, "one link at each server again", 20*time.Second, func() bool {
		st := c.status(t)
		return st.linksOn(a.wsURL()) == 1 && st.linksOn(b.wsURL()) == 1
	})
}

// TestLinksRollingRestartUnderLoad: 20 visitors in a loop at one server
// while the other is SIGTERMed and restarted, then the other way round:
// no request fails.
func TestLinksRollingRestartUnderLoad(t *testing.T) {
	a, b := startCoreServer(t), startCoreServer(t)
	app := startMoveApp(t)
	c := startPorthole(t, interrupted, "http", app.port, "--server", a.wsURL(), "--server", b.wsURL(),
		"--links", "2", "--subdomain", "steady", "--inspect-addr", "127.0.0.1:0", "--reconnect-max", "1s")
	c.forwarding(t)
	for _, step := range []struct{ restart, remain *serverProc }{{a, b}, {b, a}} {
		step.remain.waitBody(t, step.remain.tunnelURL("steady"), "app", 20*time.Second)
		step.restart.waitBody(t, step.restart.tunnelURL("steady"), "app", 20*time.Second)
		l := startLoad(t, step.remain, step.remain.tunnelURL("steady"), 20)
		time.Sleep(300 * time.Millisecond)
		step.restart.term(t)
		if code := step.restart.exitCode(t, 30*time.Second); code != 0 {
			t.Errorf("server exit code %d, want 0", code)
		}
		step.restart.restart(t)
		step.restart.waitBody(t, step.restart.tunnelURL("steady"), "app", 20*time.Second)
		ok, failed, first := l.end()
		t.Logf("restart of %s: %d requests at %s, %d failed", step.restart.wsURL(), ok+failed, step.remain.wsURL(), failed)
		if failed != 0 || ok == 0 {
			t.Fatalf("%d of %d requests failed at the remaining server (first: %s)", failed, ok+failed, first)
		}
	}
}

// TestLinksWrongCount: --links larger than the number of different
// --server addresses, or below 1, is a usage error.
func TestLinksWrongCount(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--links", "2", "--server", "ws://127.0.0.1:1"}, "--links 2 needs at least 2 different --server addresses, got 1"},
		{[]string{"--links", "2", "--server", "ws://127.0.0.1:1", "--server", "ws://127.0.0.1:1"}, "--links 2 needs at least 2 different --server addresses, got 1"},
		{[]string{"--links", "3", "--server", "ws://127.0.0.1:1", "--server", "ws://127.0.0.1:2"}, "--links 3 needs at least 3 different --server addresses, got 2"},
		{[]string{"--links", "0", "--server", "ws://127.0.0.1:1"}, "--links 0: want 1 to 16"},
		{[]string{"--links", "17", "--server", "ws://127.0.0.1:1"}, "--links 17: want 1 to 16"},
		{[]string{"--links", "x", "--server", "ws://127.0.0.1:1"}, "invalid argument"},
	} {
		_, errOut, code := runPorthole(t, append([]string{"http", "3000"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
