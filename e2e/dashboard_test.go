package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dashboardTmux runs one program in a detached tmux session on a private
// tmux server, so the test never touches a person's own tmux.
type dashboardTmux struct {
	t      *testing.T
	tmux   string
	socket string
}

func dashboardStart(t *testing.T, width, height int, command string) *dashboardTmux {
	t.Helper()
	d := &dashboardTmux{t: t, tmux: inspectRequireTool(t, "tmux"), socket: fmt.Sprintf("porthole-e2e-%d", os.Getpid())}
	t.Cleanup(func() { exec.Command(d.tmux, "-L", d.socket, "kill-server").Run() })
	out, err := exec.Command(d.tmux, "-L", d.socket, "-f", os.DevNull, "new-session", "-d", "-s", "dash",
		"-x", fmt.Sprint(width), "-y", fmt.Sprint(height), command).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	return d
}

// screen returns what the pane shows now, as text.
func (d *dashboardTmux) screen() string {
	out, err := exec.Command(d.tmux, "-L", d.socket, "capture-pane", "-p", "-t", "dash").CombinedOutput()
	if err != nil {
		d.t.Fatalf("tmux capture-pane: %v\n%s", err, out)
	}
	return string(out)
}

// waitFor polls the screen until every pattern matches, and returns it.
func (d *dashboardTmux) waitFor(what string, patterns ...string) string {
	d.t.Helper()
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(p)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := d.screen()
		ok := true
		for _, re := range res {
			if !re.MatchString(s) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: the screen never matched %q; it shows:\n%s", what, patterns, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *dashboardTmux) keys(keys ...string) {
	args := append([]string{"-L", d.socket, "send-keys", "-t", "dash"}, keys...)
	if out, err := exec.Command(d.tmux, args...).CombinedOutput(); err != nil {
		d.t.Fatalf("tmux send-keys: %v\n%s", err, out)
	}
}

// TestDashboard runs the real client on a terminal (a tmux pane) against
// a real server and reads the screen: session status, server, latency,
// the Forwarding line, connection counts, the requests with status codes
// and durations, reconnect attempts with the next retry time when the
// server goes away, recovery when it is back, and a clean exit on Ctrl+C.
func TestDashboard(t *testing.T) {
	inspectRequireTool(t, "tmux")
	srv := inspectStartServer(t)
	app := inspectStartApp(t)
	inspectAddr := freeAddr(t)
	cmd := fmt.Sprintf("%s http %s --server %s --inspect-addr %s --reconnect-max 1s; echo \"porthole exited with status $?\"; sleep 60",
		portholeBin, app.addr, srv.wsURL(), inspectAddr)
	d := dashboardStart(t, 120, 45, cmd)

	s := d.waitFor("online",
		`Session Status +online`,
		`Server +`+regexp.QuoteMeta(srv.wsURL()),
		`Latency +\d+\.\d ms`,
		`Web Interface +http://`+regexp.QuoteMeta(inspectAddr),
		`Forwarding +http://\S+ -> http://`+regexp.QuoteMeta(app.addr),
		`no requests yet`,
	)
	url := regexp.MustCompile(`Forwarding +(http://\S+)`).FindStringSubmatch(s)[1]

	inspectVisit(t, srv, "GET", url, "/hello", "", "")
	inspectVisit(t, srv, "GET", url, "/missing", "", "")
	inspectVisit(t, srv, "POST", url, "/orders", "application/json", `{"qty":1}`)
	for range 3 {
		app.next(t, 5*time.Second)
	}
	s = d.waitFor("requests",
		`GET +/hello +200 OK +\d+(\.\d+)?(µs|ms|s)`,
		`GET +/missing +404 Not Found +\d+(\.\d+)?(µs|ms|s)`,
		`POST +/orders +200 OK`,
		`(?m)^  http +3 +0 +0 +9 B +`,
	)
	// Newest first.
	if strings.Index(s, "/orders") > strings.Index(s, "/hello") {
		t.Errorf("requests not newest first:\n%s", s)
	}
	if strings.Contains(s, "level=INFO") || strings.Contains(s, "msg=request") {
		t.Errorf("info log lines drawn over the dashboard:\n%s", s)
	}

	srv.end(terminated)
	d.waitFor("reconnecting",
		`Session Status +reconnecting \(attempt \d+, next retry \d\d:\d\d:\d\d, (in [0-9.]+m?s|now)\)`,
		`disconnected: `,
		`reconnect attempt \d+ at \d\d:\d\d:\d\d \(in [0-9.]+m?s\)`,
	)
	srv.restart(t)
	d.waitFor("back online", `Session Status +online`, `Reconnects +1`, `connected to `+regexp.QuoteMeta(srv.wsURL()))

	d.keys("C-c")
	s = d.waitFor("exit", `porthole exited with status 0`)
	if strings.Contains(s, "Session Status") {
		t.Errorf("the dashboard was left on the screen after exit:\n%s", s)
	}
}
