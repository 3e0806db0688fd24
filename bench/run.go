package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
}

func (p idlePhase) perItem() float64 { return float64(p.with-p.base) / float64(p.n) }

type results struct {
	idleServer, idleClient, idleApp int64
	afterServer, afterClient        int64
	rps                             []rpsPhase
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

	if o.has("rps") || o.has("transfer") {
		if err := runLoadPhases(r, &res, app, appAddr, direct); err != nil {
			return err
		}
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
				var a0 time.Duration
				logf("%d conns, round %d: direct", conns, round)
				d := runLoad(direct, conns, o.size, o.warmup, o.duration,
					func() { a0 = cpuOf(app.Pid()) },
					func() { p.appCPU += cpuOf(app.Pid()) - a0 })
				p.direct = p.direct.merge(d)
				line := fmt.Sprintf("  direct %.0f req/s p99 %s", d.rate(), dur(d.quantile(0.99)))
				for i, st := range stacks {
					logf("%d conns, round %d: %stunnel", conns, round, st.label)
					tr := &p.tun[i]
					sp := newSplitter(st.srv.Pid(), st.cli.Pid(), app.Pid())
					w := watchRSS(st.srv.Pid(), st.cli.Pid())
					phase := fmt.Sprintf("rps%d-round%d", conns, round)
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
					line += fmt.Sprintf(", %stunnel %.0f req/s p99 %s", st.label, t.rate(), dur(t.quantile(0.99)))
				}
				logf("%s", line)
			}
			res.rps = append(res.rps, p)
		}
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

// runIdleSessions measures a fresh server's RSS before and after o.sessions
// clients connect, one tunnel each.
func runIdleSessions(r *runner, appAddr string) (*idlePhase, error) {
	o := r.o
	srv, err := r.startServer("server-sessions", 0)
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
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
	if p.haveMem {
		p.memWith, p.haveMem = readMemStats(srv.pprof)
	}
	heapProfile(o.profile, srv.pprof, "server-sessions")
	logf("  server RSS %s -> %s", mib(p.base), mib(p.with))
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
