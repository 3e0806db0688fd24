package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

// tunnelRun is the tunnel side of one phase for one porthole build.
type tunnelRun struct {
	load loadResult     // requests/s phases
	xfer transferResult // transfer phases
	// cpu is what server plus client spent during the measured time.
	cpu time.Duration
	// Largest RSS of server and client during the runs.
	serverRSS, clientRSS int64
	// Where the machine's CPU went during the runs.
	split cpuSplit
}

// rpsPhase is one requests/s figure: the same load direct and through the
// tunnel (tun[0]; tun[1] is the -compare build).
type rpsPhase struct {
	conns  int
	direct loadResult
	// appCPU is what the app spent during the direct runs.
	appCPU time.Duration
	tun    []tunnelRun
}

// procsPhase is the concurrent requests/s figure through two stacks of
// the same build whose server and client ran with GOMAXPROCS procs[i]
// (tun[i]).
type procsPhase struct {
	rpsPhase
	procs []int
}

type transferPhase struct {
	name   string
	direct transferResult
	tun    []tunnelRun
}

// cpuSplit is the CPU time of each process of a tunnel run over a wall
// time: what is left of NumCPU x wall went to other processes or idle.
type cpuSplit struct {
	wall                        time.Duration
	server, client, app, loader time.Duration
	idle                        time.Duration // of the whole machine, /proc/stat
}

func (c cpuSplit) add(b cpuSplit) cpuSplit {
	return cpuSplit{c.wall + b.wall, c.server + b.server, c.client + b.client, c.app + b.app, c.loader + b.loader, c.idle + b.idle}
}

// splitter reads the CPU counters of server, client, app and this process.
type splitter struct {
	pids  [4]int
	t0    time.Time
	start [4]time.Duration
	idle0 time.Duration
}

func newSplitter(server, client, app int) *splitter {
	return &splitter{pids: [4]int{server, client, app, os.Getpid()}}
}

func (s *splitter) begin() {
	s.t0 = time.Now()
	s.idle0 = idleTime()
	for i, p := range s.pids {
		s.start[i] = cpuOf(p)
	}
}

func (s *splitter) end() cpuSplit {
	var d [4]time.Duration
	for i, p := range s.pids {
		d[i] = cpuOf(p) - s.start[i]
	}
	return cpuSplit{time.Since(s.t0), d[0], d[1], d[2], d[3], idleTime() - s.idle0}
}

type idlePhase struct {
	n          int
	base, with int64 // server RSS before and after
	peerRSS    int64 // the client process holding the n tunnels or sessions
	// Go's own figures for the server before and after (profile mode).
	memBase, memWith memStats
	haveMem          bool
	// Open files of the server and of the peer with the n items, and the
	// server's soft open-file limit, from /proc (sessions phase).
	serverFiles, peerFiles int
	fileLimit              uint64
}

func (p idlePhase) perItem() float64 { return float64(p.with-p.base) / float64(p.n) }

type results struct {
	idleServer, idleClient, idleApp int64
	afterServer, afterClient        int64
	rps                             []rpsPhase
	ws                              *rpsPhase // WebSocket echo round trips, one connection
	procs                           *procsPhase
	transfers                       []transferPhase
	tunnels, sessions               *idlePhase
}

func runBench(o *options) error {
	r, err := newRunner(o)
	if err != nil {
		return err
	}
	defer r.close()
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	app, appAddr, err := r.startApp()
	if err != nil {
		return err
	}
	defer app.Stop()
	direct := target{name: "direct", url: "http://" + appAddr, dial: appAddr}
	var res results

	if o.has("rps") || o.has("ws") || o.has("transfer") {
		if err := runLoadPhases(r, &res, app, appAddr, direct); err != nil {
			return err
		}
	}
	if o.has("procs") {
		p, err := runProcsPhase(r, app, appAddr, direct)
		if err != nil {
			return err
		}
		res.procs = p
	}
	if o.has("tunnels") {
		p, err := runIdleTunnels(r, appAddr)
		if err != nil {
			return err
		}
		res.tunnels = p
	}
	if o.has("sessions") {
		p, err := runIdleSessions(r, appAddr)
		if err != nil {
			return err
		}
		res.sessions = p
	}
	printReport(os.Stdout, o, r.built, &res)
	return nil
}

// stack is one server and client pair under load.
type stack struct {
	label string
	srv   *serverProc
	cli   *clientProc
	t     target
	prof  *profiler
}

func (s *stack) stop() {
	s.cli.Stop()
	s.srv.Stop()
}

func startStack(r *runner, label string, v variant, appAddr string) (*stack, error) {
	srv, err := r.startServerBin(label+"server", v, 0)
	if err != nil {
		return nil, err
	}
	cli, err := r.startClientBin(label+"client", v, srv, appAddr, 1, "bench")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	st := &stack{label: label, srv: srv, cli: cli}
	if st.t, err = tunnelTarget(cli.urls[0], srv); err == nil {
		err = probe(st.t)
	}
	if err != nil {
		st.stop()
		return nil, fmt.Errorf("tunnel does not answer: %w", err)
	}
	if r.o.profile != "" {
		st.prof = &profiler{dir: r.o.profile, procs: map[string]string{"server": srv.pprof, "client": cli.pprof}}
	}
	return st, nil
}

func runLoadPhases(r *runner, res *results, app *procs.Proc, appAddr string, direct target) error {
	o := r.o
	main, err := startStack(r, "", variant{bin: r.bin}, appAddr)
	if err != nil {
		return err
	}
	defer main.stop()
	stacks := []*stack{main}
	if o.compare != "" {
		v := variant{bin: o.compare, logLevel: o.compareLog}
		if o.compareEnv != "" {
			v.env = strings.Split(o.compareEnv, ",")
		}
		b, err := startStack(r, "b-", v, appAddr)
		if err != nil {
			return err
		}
		defer b.stop()
		stacks = append(stacks, b)
	}
	srv, cli := main.srv, main.cli
	logf("tunnel up at %s; waiting %s for idle RSS", cli.urls[0], o.settle)
	time.Sleep(o.settle)
	res.idleServer, res.idleClient, res.idleApp = steadyRSS(srv.Pid()), steadyRSS(cli.Pid()), steadyRSS(app.Pid())

	if o.has("rps") {
		for _, conns := range []int{o.conns, 1} {
			p := rpsPhase{conns: conns, tun: make([]tunnelRun, len(stacks))}
			for round := 1; round <= o.rounds; round++ {
				logf("%d conns, round %d: direct", conns, round)
				d := directLoad(o, &p, app, direct)
				line := fmt.Sprintf("  direct %.0f req/s p99 %s", d.rate(), dur(d.quantile(0.99)))
				for i, st := range stacks {
					logf("%d conns, round %d: %stunnel", conns, round, st.label)
					t := tunnelLoad(o, st, app, conns, fmt.Sprintf("rps%d-round%d", conns, round), &p.tun[i])
					line += fmt.Sprintf(", %stunnel %.0f req/s p99 %s", st.label, t.rate(), dur(t.quantile(0.99)))
				}
				logf("%s", line)
			}
			res.rps = append(res.rps, p)
		}
	}

	if o.has("ws") {
		p, err := runEchoPhase(o, stacks, app, direct)
		if err != nil {
			return err
		}
		res.ws = p
	}

	if o.has("transfer") {
		for _, kind := range []string{"download", "upload"} {
			f := download
			if kind == "upload" {
				f = upload
			}
			p := transferPhase{name: kind, tun: make([]tunnelRun, len(stacks))}
			for round := 1; round <= o.rounds; round++ {
				logf("%s %s, round %d: direct", kind, o.transfer.String(), round)
				d, err := f(direct, int64(o.transfer))
				if err != nil {
					return fmt.Errorf("direct %w", err)
				}
				p.direct = p.direct.add(d)
				line := fmt.Sprintf("  direct %.0f MB/s", d.mbps())
				for i, st := range stacks {
					logf("%s %s, round %d: %stunnel", kind, o.transfer.String(), round, st.label)
					tr := &p.tun[i]
					w := watchRSS(st.srv.Pid(), st.cli.Pid())
					sp := newSplitter(st.srv.Pid(), st.cli.Pid(), app.Pid())
					sp.begin()
					st.prof.start(fmt.Sprintf("%s-round%d", kind, round))
					x, err := f(st.t, int64(o.transfer))
					c := sp.end()
					st.prof.stop()
					m := w.finish()
					if err != nil {
						return fmt.Errorf("%stunnel %w; server log:\n%s\nclient log:\n%s", st.label, err, st.srv.Tail(5), st.cli.Tail(5))
					}
					tr.xfer = tr.xfer.add(x)
					tr.split = tr.split.add(c)
					tr.cpu += c.server + c.client
					tr.serverRSS, tr.clientRSS = max(tr.serverRSS, m[0]), max(tr.clientRSS, m[1])
					line += fmt.Sprintf(", %stunnel %.0f MB/s", st.label, x.mbps())
				}
				logf("%s", line)
			}
			res.transfers = append(res.transfers, p)
		}
	}
	time.Sleep(o.settle)
	res.afterServer, res.afterClient = steadyRSS(srv.Pid()), steadyRSS(cli.Pid())
	return nil
}

// directLoad runs one requests/s round of p against the app directly and
// adds it to p, with the app's CPU time.
func directLoad(o *options, p *rpsPhase, app *procs.Proc, direct target) loadResult {
	var a0 time.Duration
	d := runLoad(direct, p.conns, o.size, o.warmup, o.duration,
		func() { a0 = cpuOf(app.Pid()) },
		func() { p.appCPU += cpuOf(app.Pid()) - a0 })
	p.direct = p.direct.merge(d)
	return d
}

// tunnelLoad runs one requests/s round through st and adds it to tr, with
// the CPU time and RSS maxima of st's server and client; phase names the
// CPU profiles (-profile).
func tunnelLoad(o *options, st *stack, app *procs.Proc, conns int, phase string, tr *tunnelRun) loadResult {
	sp := newSplitter(st.srv.Pid(), st.cli.Pid(), app.Pid())
	w := watchRSS(st.srv.Pid(), st.cli.Pid())
	t := runLoad(st.t, conns, o.size, o.warmup, o.duration,
		func() { sp.begin(); st.prof.start(phase) },
		func() {
			c := sp.end()
			st.prof.stop()
			tr.split = tr.split.add(c)
			tr.cpu += c.server + c.client
		})
	m := w.finish()
	tr.serverRSS, tr.clientRSS = max(tr.serverRSS, m[0]), max(tr.clientRSS, m[1])
	tr.load = tr.load.merge(t)
	return t
}

// runEchoPhase measures WebSocket echo round trips of o.wsSize bytes on
// one WebSocket, o.rounds times: to the app directly, then through each
// stack, a new WebSocket each time.
func runEchoPhase(o *options, stacks []*stack, app *procs.Proc, direct target) (*rpsPhase, error) {
	p := &rpsPhase{conns: 1, tun: make([]tunnelRun, len(stacks))}
	for round := 1; round <= o.rounds; round++ {
		logf("websocket echo %d B, round %d: direct", o.wsSize, round)
		var a0 time.Duration
		d, err := runEcho(direct, o.wsSize, o.warmup, o.duration,
			func() { a0 = cpuOf(app.Pid()) },
			func() { p.appCPU += cpuOf(app.Pid()) - a0 })
		if err != nil {
			return nil, fmt.Errorf("direct %w", err)
		}
		p.direct = p.direct.merge(d)
		line := fmt.Sprintf("  direct p50 %s p99 %s", dur(d.quantile(0.5)), dur(d.quantile(0.99)))
		for i, st := range stacks {
			logf("websocket echo %d B, round %d: %stunnel", o.wsSize, round, st.label)
			tr := &p.tun[i]
			sp := newSplitter(st.srv.Pid(), st.cli.Pid(), app.Pid())
			w := watchRSS(st.srv.Pid(), st.cli.Pid())
			t, err := runEcho(st.t, o.wsSize, o.warmup, o.duration,
				func() { sp.begin(); st.prof.start(fmt.Sprintf("ws-round%d", round)) },
				func() {
					c := sp.end()
					st.prof.stop()
					tr.split = tr.split.add(c)
					tr.cpu += c.server + c.client
				})
			m := w.finish()
			if err != nil {
				st.prof.stop()
				return nil, fmt.Errorf("%stunnel %w; server log:\n%s\nclient log:\n%s", st.label, err, st.srv.Tail(5), st.cli.Tail(5))
			}
			tr.serverRSS, tr.clientRSS = max(tr.serverRSS, m[0]), max(tr.clientRSS, m[1])
			tr.load = tr.load.merge(t)
			line += fmt.Sprintf(", %stunnel p50 %s p99 %s", st.label, dur(t.quantile(0.5)), dur(t.quantile(0.99)))
		}
		logf("%s", line)
	}
	return p, nil
}

// runProcsPhase measures the concurrent requests/s phase (o.conns
// connections, o.size bytes) through two stacks of the build under test,
// one whose server and client run with GOMAXPROCS=1 and one with
// GOMAXPROCS=2 (the variant environment, as -compare-env sets it), both up
// for the whole phase. Each round runs direct first, then both stacks, in
// alternating order.
func runProcsPhase(r *runner, app *procs.Proc, appAddr string, direct target) (*procsPhase, error) {
	o := r.o
	p := &procsPhase{rpsPhase: rpsPhase{conns: o.conns, tun: make([]tunnelRun, 2)}, procs: []int{1, 2}}
	var stacks []*stack
	for _, n := range p.procs {
		v := variant{bin: r.bin, env: []string{"GOMAXPROCS=" + strconv.Itoa(n)}}
		st, err := startStack(r, fmt.Sprintf("gomaxprocs%d-", n), v, appAddr)
		if err != nil {
			return nil, err
		}
		defer st.stop()
		stacks = append(stacks, st)
	}
	for round := 1; round <= o.rounds; round++ {
		logf("%d conns, GOMAXPROCS 1 and 2, round %d: direct", o.conns, round)
		d := directLoad(o, &p.rpsPhase, app, direct)
		line := fmt.Sprintf("  direct %.0f req/s", d.rate())
		order := []int{0, 1}
		if round%2 == 0 {
			order = []int{1, 0}
		}
		for _, i := range order {
			st := stacks[i]
			logf("%d conns, round %d: tunnel, server and client at GOMAXPROCS=%d", o.conns, round, p.procs[i])
			t := tunnelLoad(o, st, app, o.conns, fmt.Sprintf("procs%d-round%d", p.procs[i], round), &p.tun[i])
			line += fmt.Sprintf(", GOMAXPROCS=%d %.0f req/s p99 %s", p.procs[i], t.rate(), dur(t.quantile(0.99)))
		}
		logf("%s", line)
	}
	return p, nil
}

// runIdleTunnels measures a fresh server's RSS before and after one client
// binds o.tunnels tunnels.
func runIdleTunnels(r *runner, appAddr string) (*idlePhase, error) {
	o := r.o
	srv, err := r.startServer("server-tunnels", 0)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	time.Sleep(o.settle)
	p := &idlePhase{n: o.tunnels, base: steadyRSS(srv.Pid())}
	p.memBase, p.haveMem = readMemStats(srv.pprof)
	logf("%d idle tunnels in one client", o.tunnels)
	cli, err := r.startClient("client-tunnels", srv, appAddr, o.tunnels, "t")
	if err != nil {
		return nil, err
	}
	defer cli.Stop()
	time.Sleep(o.settle)
	p.with, p.peerRSS = steadyRSS(srv.Pid()), steadyRSS(cli.Pid())
	if p.haveMem {
		p.memWith, p.haveMem = readMemStats(srv.pprof)
	}
	heapProfile(o.profile, srv.pprof, "server-tunnels")
	// Every tunnel must be live, not just announced: try the last one.
	tun, err := tunnelTarget(cli.urls[len(cli.urls)-1], srv)
	if err != nil {
		return nil, err
	}
	if err := probe(tun); err != nil {
		return nil, fmt.Errorf("tunnel %s: %w", cli.urls[len(cli.urls)-1], err)
	}
	logf("  server RSS %s -> %s", mib(p.base), mib(p.with))
	return p, nil
}

// fileMargin is what the server and the sessions helper need open besides
// one socket per session: listeners, logs, the runtime's poller, the
// profiling endpoint.
const fileMargin = 256

// runIdleSessions measures a fresh server's RSS before and after o.sessions
// clients connect, one tunnel each.
func runIdleSessions(r *runner, appAddr string) (*idlePhase, error) {
	o := r.o
	need := uint64(o.sessions) + fileMargin
	if limit, err := procs.RaiseFileLimit(); err == nil && limit < need {
		return nil, fmt.Errorf("-sessions %d needs about %d open files in the server and in the sessions helper; the open-file limit is %d (ulimit -Hn)", o.sessions, need, limit)
	}
	srv, err := r.startServer("server-sessions", 0)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	// The children must have inherited the raised limit.
	limit, err := fileLimit(srv.Pid())
	if err != nil {
		return nil, err
	}
	if limit < need {
		return nil, fmt.Errorf("the server's open-file limit is %d, -sessions %d needs about %d", limit, o.sessions, need)
	}
	time.Sleep(o.settle)
	p := &idlePhase{n: o.sessions, base: steadyRSS(srv.Pid())}
	p.memBase, p.haveMem = readMemStats(srv.pprof)
	logf("%d idle client sessions", o.sessions)
	h, err := r.startSessions("sessions", srv, appAddr, o.sessions)
	if err != nil {
		return nil, err
	}
	defer h.Stop()
	time.Sleep(o.settle)
	p.with, p.peerRSS = steadyRSS(srv.Pid()), steadyRSS(h.Pid())
	p.serverFiles, p.peerFiles, p.fileLimit = openFiles(srv.Pid()), openFiles(h.Pid()), limit
	if p.haveMem {
		p.memWith, p.haveMem = readMemStats(srv.pprof)
	}
	heapProfile(o.profile, srv.pprof, "server-sessions")
	logf("  server RSS %s -> %s; open files: server %d, helper %d (limit %d)", mib(p.base), mib(p.with), p.serverFiles, p.peerFiles, limit)
	if p.serverFiles >= 0 && p.serverFiles < o.sessions {
		return nil, fmt.Errorf("the server has %d open files with %d sessions said to be up: fewer than one socket per session", p.serverFiles, o.sessions)
	}
	return p, nil
}

// probe sends one request and checks the answer.
func probe(t target) error {
	tr := newTransport(t, 1)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(t.url + "/bytes?n=16")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(b) != 16 {
		return errors.New(resp.Status + ": " + string(b))
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
