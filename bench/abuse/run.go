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

// servers are the two servers of a run, by the name attacks give.
var servers = map[string]struct {
	args   []string
	config string
	note   string
}{
	"open": {args: []string{"--no-auth"}, note: "porthole server --no-auth, no config file (the defaults)"},
	"auth": {
		// The legitimate load (8 visitors at 40 requests a second each
		// from one address) stays under the per-address rate.
		config: "[limits]\nvisitor_requests_per_second_per_ip = 500\nvisitor_burst_per_ip = 1000\n",
		note:   "porthole server with API keys, [limits] visitor_requests_per_second_per_ip = 500, visitor_burst_per_ip = 1000",
	},
}

// env is one server's part of the run.
type env struct {
	o    *options
	dir  string
	srv  *harness.Server
	keys map[string]string // users' API keys, on the auth server
	apps struct{ bulk, evil, small int }
}

// attackerTunnel starts the attacker's own client, `porthole http PORT
// --subdomain NAME`, sets p.Host to its hostname, and returns its Stop.
func (e *env) attackerTunnel(p *params, name string, port int, key string) (func(), error) {
	c, host, err := harness.StartClient(e.dir, name, e.srv, strconv.Itoa(port), key, "--subdomain", name)
	if err != nil {
		return nil, err
	}
	p.Host = host
	return c.Stop, nil
}

// run runs the selected attacks, each server's in turn.
func run(ctx context.Context, dir string, o *options) (*result, error) {
	selected, _ := selectAttacks(o.attacks)
	res := &result{Date: time.Now().UTC().Format("2006-01-02"), CPUs: runtime.NumCPU(), Duration: o.duration.String(),
		Load: fmt.Sprintf("%d keep-alive visitors, one request each per %s (%.0f requests/s), 1 KiB answers",
			o.loadConns, o.loadInterval, float64(o.loadConns)*float64(time.Second)/float64(o.loadInterval))}
	res.Machine = machineNote()
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
	legitPort, stopLegit, err := harness.StartApp(legitApp())
	if err != nil {
		return nil, err
	}
	defer stopLegit()

	for _, name := range []string{"open", "auth"} {
		var these []*attack
		for _, a := range selected {
			if a.server == name {
				these = append(these, a)
			}
		}
		slices.SortStableFunc(these, func(a, b *attack) int { return bool2int(a.runLast) - bool2int(b.runLast) })
		if len(these) == 0 {
			continue
		}
		e := &env{o: o, dir: dir, keys: map[string]string{}}
		e.apps.bulk, _ = strconv.Atoi(m[1])
		e.apps.evil, _ = strconv.Atoi(m[2])
		e.apps.small, _ = strconv.Atoi(m[3])
		sr, err := runServer(ctx, e, name, legitPort, these)
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

// runServer starts one server with the legitimate tunnel and its load,
// measures it unloaded, then runs each attack against it.
func runServer(ctx context.Context, e *env, name string, legitPort int, these []*attack) (*serverRun, error) {
	cfg := servers[name]
	srv, err := harness.StartServer(e.dir, e.o.bin, harness.ServerOptions{Name: "server-" + name, Domain: domain, Config: cfg.config, Args: cfg.args})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	e.srv = srv
	legitKey := ""
	if name == "auth" {
		for _, u := range []string{"legit", "sprayer"} {
			k, err := srv.UserKey(u)
			if err != nil {
				return nil, err
			}
			e.keys[u] = k
		}
		legitKey = e.keys["legit"]
	}
	client, host, err := harness.StartClient(e.dir, "legit-"+name, srv, strconv.Itoa(legitPort), legitKey, "--subdomain", "legit")
	if err != nil {
		return nil, err
	}
	defer client.Stop()
	log.Printf("server %q at %s: legitimate tunnel %s", name, srv.HTTP, host)

	ld := startLoad(srv.HTTP, "http://"+host+"/", fmt.Sprintf("http://127.0.0.1:%d/", legitPort), e.o.loadConns, e.o.loadInterval)
	defer ld.stop()
	time.Sleep(3 * time.Second) // warm up: connections, streams, pools

	out := &serverRun{server: &serverResult{Name: name, Command: cfg.note}}
	g0, rss0 := level(srv)
	out.server.Goroutines, out.server.RSSMiB = g0, mib(rss0)
	ld.begin()
	time.Sleep(e.o.duration)
	unloaded := ld.end()
	out.server.Unloaded, out.server.Control = unloaded.stats()
	out.server.Errors = unloaded.errKinds
	log.Printf("server %q unloaded: %s (control %s); %d goroutines, %.0f MiB", name, out.server.Unloaded, out.server.Control, g0, mib(rss0))

	for _, a := range these {
		r, err := runAttack(e, a, ld, out.server, g0)
		if r != nil {
			out.attacks = append(out.attacks, r)
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.name, err)
		}
	}
	out.server.LegitConnections = ld.dials.Load()
	out.server.LateSlots = ld.late.Load()
	return out, nil
}

// runAttack runs one attack for the phase's length and measures it.
func runAttack(e *env, a *attack, ld *load, base *serverResult, restG int) (*attackResult, error) {
	srv := e.srv
	p := params{Attack: a.name, HTTP: srv.HTTP, Tunnel: srv.Tunnel, Domain: domain}
	cleanup := func() {}
	if a.setup != nil {
		var err error
		if cleanup, err = a.setup(e, &p); err != nil {
			return nil, err
		}
	}
	defer func() { cleanup() }()
	r := &attackResult{Name: a.name, Title: a.title, Server: base.Name, Actor: a.actor, Budget: a.budget}
	// Start from rest: what the attack before left has been let go.
	g, rss, _ := settle(srv, restG, 30, 20*time.Second)
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

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
