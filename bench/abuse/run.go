package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
	"github.com/porthole/porthole/bench/internal/procs"
)

const domain = "abuse.test"

// rampUp is how long an attack takes to reach its pace (10,000
// connections opened, 100 downloads filling their buffers); the p99 of
// the rest of the phase is reported too.
const rampUp = 3 * time.Second

// servers are the kinds of server of a run, by the name attacks give.
// Each attack gets a fresh server of its kind, so that what one attack
// leaves behind (a grown heap, entries in the per-address tables) does
// not change the baseline of the next.
var servers = map[string]struct {
	args   []string
	config string
	tls    bool // a certificate, an HTTPS listener and wss:// for the clients
	note   string
}{
	"open": {args: []string{"--no-auth"}, note: "porthole server --no-auth, no config file (the defaults)"},
	"auth": {
		// The legitimate load (8 visitors at 40 requests a second each
		// from one address) stays under the per-address rate.
		config: "[limits]\nvisitor_requests_per_second_per_ip = 500\nvisitor_burst_per_ip = 1000\n",
		note:   "porthole server with API keys, [limits] visitor_requests_per_second_per_ip = 500, visitor_burst_per_ip = 1000",
	},
	"tls": {
		args: []string{"--no-auth"}, tls: true,
		note: "porthole server --no-auth --https-addr --tls-cert --tls-key (a self-signed *.abuse.test), no config file",
	},
}

// serverOrder is the order in which the kinds run.
var serverOrder = []string{"open", "tls", "auth"}

// env is the run's state: its options and helpers, and the server
// instance of the phase in progress.
type env struct {
	o         *options
	dir       string
	legitPort int
	apps      struct{ bulk, evil, small int }
	cert      certFiles

	// The current instance.
	srv   *harness.Server
	tls   bool
	https string            // the HTTPS listener, on a "tls" server
	keys  map[string]string // users' API keys, on an "auth" server
}

// instance is one server with the legitimate tunnel and its load running.
type instance struct {
	srv    *harness.Server
	client *procs.Proc
	ld     *load
	g0     int   // goroutines at rest, with the load running
	rss0   int64 // resident set then
}

func (i *instance) stop() {
	i.ld.stop()
	i.client.Stop()
	i.srv.Stop()
}

// startInstance starts a server of the kind, the legitimate tunnel and
// its steady load, lets them warm up, and measures the server at rest.
func (e *env) startInstance(kind, name string) (*instance, error) {
	cfg := servers[kind]
	args := cfg.args
	if cfg.tls {
		args = append(slices.Clone(args), "--https-addr", "127.0.0.1:0", "--tls-cert", e.cert.cert, "--tls-key", e.cert.key)
	}
	srv, err := harness.StartServer(e.dir, e.o.bin, harness.ServerOptions{Name: "server-" + name, Domain: domain, Config: cfg.config, Args: args})
	if err != nil {
		return nil, err
	}
	e.srv, e.tls, e.https, e.keys = srv, cfg.tls, "", map[string]string{}
	if cfg.tls {
		m := regexp.MustCompile(`"https":"([^"]+)"`).FindStringSubmatch(srv.Stderr())
		if m == nil {
			srv.Stop()
			return nil, fmt.Errorf("server %s: no https address in its start line", name)
		}
		e.https = m[1]
	}
	legitKey := ""
	if !slices.Contains(cfg.args, "--no-auth") {
		for _, u := range []string{"legit", "sprayer"} {
			k, err := srv.UserKey(u)
			if err != nil {
				srv.Stop()
				return nil, err
			}
			e.keys[u] = k
		}
		legitKey = e.keys["legit"]
	}
	client, host, err := e.startClient("legit-"+name, e.legitPort, legitKey, "--subdomain", "legit")
	if err != nil {
		srv.Stop()
		return nil, err
	}
	ld := startLoad(srv.HTTP, "http://"+host+"/", fmt.Sprintf("http://127.0.0.1:%d/", e.legitPort), e.o.loadConns, e.o.loadInterval)
	time.Sleep(3 * time.Second) // warm up: connections, streams, pools
	in := &instance{srv: srv, client: client, ld: ld}
	in.g0, in.rss0 = level(srv)
	return in, nil
}

// startClient runs `porthole http PORT` against the current server (over
// wss:// with the run's CA on a "tls" server) and returns it with the
// tunnel's hostname.
func (e *env) startClient(name string, port int, key string, args ...string) (*procs.Proc, string, error) {
	if !e.tls {
		return harness.StartClient(e.dir, name, e.srv, strconv.Itoa(port), key, args...)
	}
	a := []string{"http", strconv.Itoa(port), "--server", "wss://" + e.srv.Tunnel, "--ca-file", e.cert.cert, "--inspect-addr", "127.0.0.1:0"}
	if key != "" {
		a = append(a, "--api-key", key)
	}
	p, err := harness.StartProc(e.dir, "client-"+name, e.srv.Bin, append(a, args...)...)
	if err != nil {
		return nil, "", err
	}
	m, err := p.WaitFor(p.Stdout, regexp.MustCompile(`(?m)^Forwarding https?://([^ :/]+)`), 20*time.Second)
	if err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, m[1], nil
}

// attackerTunnel starts the attacker's own client, `porthole http PORT
// --subdomain NAME` and more args, sets p.Host to its hostname, and
// returns its Stop.
func (e *env) attackerTunnel(p *params, name string, port int, key string, args ...string) (func(), error) {
	c, host, err := e.startClient(name, port, key, append([]string{"--subdomain", name}, args...)...)
	if err != nil {
		return nil, err
	}
	p.Host = host
	return c.Stop, nil
}

// run runs the selected attacks, each server kind's in turn.
func run(ctx context.Context, dir string, o *options) (*result, error) {
	selected, _ := selectAttacks(o.attacks)
	res := &result{Date: time.Now().UTC().Format("2006-01-02"), CPUs: runtime.NumCPU(), Duration: o.duration.String(),
		Load: fmt.Sprintf("%d keep-alive visitors, one request each per %s (%.0f requests/s), 1 KiB answers",
			o.loadConns, o.loadInterval, float64(o.loadConns)*float64(time.Second)/float64(o.loadInterval))}
	res.Machine = machineNote()
	e := &env{o: o, dir: dir}
	var err error
	if e.cert, err = writeCert(dir); err != nil {
		return nil, err
	}
	// The attackers' local apps, for the whole run.
	apps, err := harness.StartProc(dir, "apps", selfExe(), "-role", "apps")
	if err != nil {
		return nil, err
	}
	defer apps.Stop()
	m, err := apps.WaitFor(apps.Stdout, regexp.MustCompile(`ports (\d+) (\d+) (\d+)`), 10*time.Second)
	if err != nil {
		return nil, err
	}
	e.apps.bulk, _ = strconv.Atoi(m[1])
	e.apps.evil, _ = strconv.Atoi(m[2])
	e.apps.small, _ = strconv.Atoi(m[3])
	var stopLegit func()
	e.legitPort, stopLegit, err = harness.StartApp(legitApp())
	if err != nil {
		return nil, err
	}
	defer stopLegit()

	for _, name := range serverOrder {
		var these []*attack
		for _, a := range selected {
			if a.server == name {
				these = append(these, a)
			}
		}
		if len(these) == 0 {
			continue
		}
		sr, err := runServer(e, name, these)
		if sr != nil {
			res.Servers = append(res.Servers, sr.server)
			res.Attacks = append(res.Attacks, sr.attacks...)
		}
		if err != nil {
			return res, err
		}
	}
	// The report's order is the attacks' order.
	slices.SortStableFunc(res.Attacks, func(a, b *attackResult) int {
		return slices.IndexFunc(attacks, func(x *attack) bool { return x.name == a.Name }) -
			slices.IndexFunc(attacks, func(x *attack) bool { return x.name == b.Name })
	})
	return res, nil
}

type serverRun struct {
	server  *serverResult
	attacks []*attackResult
}

// runServer measures a server of the kind unloaded, then runs each
// attack against a fresh one.
func runServer(e *env, kind string, these []*attack) (*serverRun, error) {
	out := &serverRun{server: &serverResult{Name: kind, Command: servers[kind].note, Visitors: e.o.loadConns}}
	in, err := e.startInstance(kind, kind+"-unloaded")
	if err != nil {
		return nil, err
	}
	log.Printf("server %q at %s: legitimate tunnel up", kind, in.srv.HTTP)
	out.server.Goroutines, out.server.RSSMiB = in.g0, mib(in.rss0)
	in.ld.begin()
	time.Sleep(e.o.duration)
	unloaded := in.ld.end()
	out.server.Unloaded, out.server.Control = unloaded.stats()
	out.server.Errors = unloaded.errKinds
	out.server.LegitConnections += in.ld.dials.Load()
	out.server.LateSlots += in.ld.late.Load()
	out.server.Instances++
	in.stop()
	log.Printf("server %q unloaded: %s (control %s); %d goroutines, %.0f MiB", kind, out.server.Unloaded, out.server.Control, in.g0, mib(in.rss0))

	for _, a := range these {
		in, err := e.startInstance(kind, kind+"-"+a.name)
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.name, err)
		}
		r, err := runAttack(e, a, in, out.server)
		out.server.LegitConnections += in.ld.dials.Load()
		out.server.LateSlots += in.ld.late.Load()
		out.server.Instances++
		in.stop()
		if r != nil {
			out.attacks = append(out.attacks, r)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.name, err)
		}
	}
	return out, nil
}

// runAttack runs one attack for the phase's length and measures it.
func runAttack(e *env, a *attack, in *instance, base *serverResult) (*attackResult, error) {
	srv, ld, restG := in.srv, in.ld, in.g0
	p := params{Attack: a.name, HTTP: srv.HTTP, HTTPS: e.https, Tunnel: srv.Tunnel, Domain: domain}
	cleanup := func() {}
	if a.setup != nil {
		var err error
		if cleanup, err = a.setup(e, &p); err != nil {
			return nil, err
		}
	}
	defer func() { cleanup() }()
	r := &attackResult{Name: a.name, Title: a.title, Server: base.Name, Actor: a.actor, Budget: a.budget}
	// The fresh server at rest, with the legitimate load running (and
	// the attacker's own tunnel, if it has one).
	g, rss := level(srv)
	r.GoroutinesBaseline, r.RSSBaselineMiB = g, mib(rss)
	hits0 := srv.LimitHits()
	cpu0, _ := procs.CPUTime(srv.Pid())

	raw, _ := json.Marshal(p)
	att, err := harness.StartProc(e.dir, "attacker-"+a.name, selfExe(), "-role", "attacker", "-params", string(raw))
	if err != nil {
		return nil, err
	}
	w := startWatch(srv)
	ld.begin()
	t0 := time.Now()
	time.Sleep(e.o.duration)
	phase := ld.end()
	acpu, _ := procs.CPUTime(att.Pid())
	att.Stop()
	w.finish()
	elapsed := time.Since(t0).Seconds()
	cpu1, _ := procs.CPUTime(srv.Pid())
	r.ServerCPU = 100 * (cpu1 - cpu0).Seconds() / elapsed
	r.AttackerCPU = 100 * acpu.Seconds() / elapsed

	if err := json.Unmarshal([]byte(att.Stdout()), &r.Attacker); err != nil {
		r.Attacker.Err = fmt.Sprintf("no counts from the attacker (%v); see %s", err, att.LogPath)
	}
	hits1 := srv.LimitHits()
	r.LimitHits = map[string]float64{}
	for k, v := range hits1 {
		if d := v - hits0[k]; d > 0 {
			r.LimitHits[k] = d
		}
	}
	r.Latency, r.Control = phase.stats()
	r.P99BySecond, r.P99AfterRampMs = phase.bySecond(rampUp)
	r.Errors = phase.errKinds
	if u := base.Unloaded.P99ms; u > 0 {
		r.P99Ratio = r.Latency.P99ms / u
	}
	if u := base.Control.P99ms; u > 0 {
		r.ControlP99Ratio = r.Control.P99ms / u
	}
	w.mu.Lock()
	r.RSSPeakMiB, r.GoroutinesPeak, r.Gauges, r.MetricScrapeFailures = mib(w.rssPeak), int(w.gPeak), maps.Clone(w.gauges), w.metricFails
	w.mu.Unlock()
	r.CutOff = a.verdict(r.Attacker.Counts, r.LimitHits)

	// The server must have survived, and let go of the attack.
	select {
	case <-srv.Exited():
		r.ServerDied = true
		return r, fmt.Errorf("the server exited during the attack; see %s", srv.LogPath)
	default:
	}
	cleanup()
	cleanup = func() {}
	g, rss, ok := settle(srv, restG, 30, 20*time.Second)
	r.GoroutinesAfter, r.RSSAfterMiB, r.Recovered = g, mib(rss), ok
	log.Printf("%s: p99 %.2fms (x%.2f), %d errors; RSS %.0f -> %.0f MiB, goroutines %d -> %d; %s",
		a.name, r.Latency.P99ms, r.P99Ratio, r.Latency.Errors, r.RSSBaselineMiB, r.RSSPeakMiB,
		r.GoroutinesBaseline, r.GoroutinesPeak, r.CutOff)
	return r, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
