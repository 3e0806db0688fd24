package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// printReport writes the machine, the settings and the results table.
func printReport(w io.Writer, o *options, built string, res *results) {
	procs := "Go default (" + fmt.Sprint(runtime.NumCPU()) + ")"
	if o.gomaxprocs > 0 {
		procs = fmt.Sprint(o.gomaxprocs)
	}
	fmt.Fprintf(w, "\nporthole benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "porthole: %s\n", built)
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s, kernel %s\n", cpuModel(), runtime.NumCPU(), runtime.Version(), kernel())
	fmt.Fprintf(w, "settings: %d rounds, each direct then tunnel; req/s phases %s measured after %s warm-up; %d B responses; %s transfers; GOMAXPROCS %s; log level %s",
		o.rounds, o.duration, o.warmup, o.size, o.transfer.String(), procs, o.logLevel)
	if res.ws != nil {
		fmt.Fprintf(w, "; WebSocket echo of %d B messages, one at a time, %s per round after %s warm-up", o.wsSize, o.duration, o.warmup)
	}
	fmt.Fprint(w, "\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	row("figure", "tunnel", "direct", "tunnel/direct", "target", "met")
	for _, p := range res.rps {
		t := p.tun[0]
		rt := t.load.rate() / p.direct.rate()
		target, ok := "", ""
		switch p.conns {
		case o.conns:
			target, ok = ">= 15%", yes(rt >= 0.15)
		case 1:
			target, ok = ">= 25%", yes(rt >= 0.25)
		}
		row(fmt.Sprintf("req/s, %d conns", p.conns), fmt.Sprintf("%.0f", t.load.rate()), fmt.Sprintf("%.0f", p.direct.rate()), pct(rt), target, ok)
		row(fmt.Sprintf("p50 latency, %d conns", p.conns), dur(t.load.quantile(0.5)), dur(p.direct.quantile(0.5)),
			times(float64(t.load.quantile(0.5))/float64(p.direct.quantile(0.5))), "", "")
		r99 := float64(t.load.quantile(0.99)) / float64(p.direct.quantile(0.99))
		target, ok = "", ""
		if p.conns == o.conns {
			target, ok = "<= 2x", yes(r99 <= 2)
		}
		row(fmt.Sprintf("p99 latency, %d conns", p.conns), dur(t.load.quantile(0.99)), dur(p.direct.quantile(0.99)), times(r99), target, ok)
		tc := perReq(t.cpu, t.load.requests)
		ac := perReq(p.appCPU, p.direct.requests)
		row(fmt.Sprintf("CPU/request, %d conns (tunnel: server+client; direct: app)", p.conns), us(tc), us(ac), times(tc/ac), "", "")
	}
	if p := res.ws; p != nil {
		t := p.tun[0]
		r50 := float64(t.load.quantile(0.5)) / float64(p.direct.quantile(0.5))
		row(fmt.Sprintf("WebSocket echo p50, %d B", o.wsSize), dur(t.load.quantile(0.5)), dur(p.direct.quantile(0.5)), times(r50), "<= 2.5x", yes(r50 <= 2.5))
		row(fmt.Sprintf("WebSocket echo p99, %d B", o.wsSize), dur(t.load.quantile(0.99)), dur(p.direct.quantile(0.99)),
			times(float64(t.load.quantile(0.99))/float64(p.direct.quantile(0.99))), "", "")
		tc, ac := perReq(t.cpu, t.load.requests), perReq(p.appCPU, p.direct.requests)
		row("CPU/echo (tunnel: server+client; direct: app)", us(tc), us(ac), times(tc/ac), "", "")
	}
	if p := res.procs; p != nil {
		for i, n := range p.procs {
			t := p.tun[i].load
			row(fmt.Sprintf("req/s, %d conns, server+client GOMAXPROCS=%d", p.conns, n), fmt.Sprintf("%.0f", t.rate()), fmt.Sprintf("%.0f", p.direct.rate()), pct(t.rate()/p.direct.rate()), "", "")
		}
		a, b := p.tun[0].load, p.tun[1].load
		rt := b.rate() / a.rate()
		row(fmt.Sprintf("req/s, %d conns, GOMAXPROCS=%d vs %d (server+client)", p.conns, p.procs[1], p.procs[0]),
			fmt.Sprintf("%.0f vs %.0f", b.rate(), a.rate()), "", times(rt)+" (2 vs 1)", ">= 1.7x", yes(rt >= 1.7))
	}
	for _, p := range res.transfers {
		t := p.tun[0]
		rt := t.xfer.mbps() / p.direct.mbps()
		row(fmt.Sprintf("%s %s, MB/s", p.name, o.transfer.String()), fmt.Sprintf("%.0f", t.xfer.mbps()), fmt.Sprintf("%.0f", p.direct.mbps()), pct(rt), ">= 30%", yes(rt >= 0.30))
	}
	if res.idleServer > 0 {
		row("RSS idle, server / client", mib(res.idleServer)+" / "+mib(res.idleClient), "app "+mib(res.idleApp), "-", "", "")
	}
	for _, p := range res.rps {
		row(fmt.Sprintf("RSS max under load, %d conns, server / client", p.conns), mib(p.tun[0].serverRSS)+" / "+mib(p.tun[0].clientRSS), "", "-", "", "")
	}
	for _, p := range res.transfers {
		row(fmt.Sprintf("RSS max during %s, server / client", p.name), mib(p.tun[0].serverRSS)+" / "+mib(p.tun[0].clientRSS), "", "-", "", "")
	}
	if res.afterServer > 0 {
		row("RSS idle after load, server / client", mib(res.afterServer)+" / "+mib(res.afterClient), "", "-", "", "")
	}
	if p := res.tunnels; p != nil {
		row(fmt.Sprintf("server RSS per idle tunnel (%d in one client)", p.n), kib(p.perItem()), "", "-", "<= 5 KiB", yes(p.perItem() <= 5<<10))
	}
	if p := res.sessions; p != nil {
		row(fmt.Sprintf("server RSS per idle session (%d sessions)", p.n), kib(p.perItem()), "", "-", "<= 32 KiB", yes(p.perItem() <= 32<<10))
		// The total's target is set for 10,000 sessions.
		ok := ""
		if p.n == 10000 {
			ok = yes(p.with <= 400<<20)
		}
		row(fmt.Sprintf("server RSS with %d idle sessions", p.n), mib(p.with), "", "-", "<= 400 MiB at 10000", ok)
	}
	tw.Flush()

	fmt.Fprintln(w)
	for _, p := range res.rps {
		fmt.Fprintf(w, "%d conns: %d requests direct, %d through the tunnel; errors %d / %d\n",
			p.conns, p.direct.requests, p.tun[0].load.requests, p.direct.errors, p.tun[0].load.errors)
	}
	if p := res.ws; p != nil {
		fmt.Fprintf(w, "WebSocket echo: %d round trips direct, %d through the tunnel, on a new WebSocket each round\n",
			p.direct.requests, p.tun[0].load.requests)
	}
	if p := res.procs; p != nil {
		fmt.Fprintf(w, "GOMAXPROCS phase, %d conns: %d requests direct, %d at GOMAXPROCS=%d, %d at GOMAXPROCS=%d; errors %d / %d / %d\n",
			p.conns, p.direct.requests, p.tun[0].load.requests, p.procs[0], p.tun[1].load.requests, p.procs[1],
			p.direct.errors, p.tun[0].load.errors, p.tun[1].load.errors)
		for i, n := range p.procs {
			t := p.tun[i]
			fmt.Fprintf(w, "  GOMAXPROCS=%d: p50 %s (%s direct), p99 %s (%s direct), CPU/request %s (server+client), RSS max server / client %s\n",
				n, dur(t.load.quantile(0.5)), times(float64(t.load.quantile(0.5))/float64(p.direct.quantile(0.5))),
				dur(t.load.quantile(0.99)), times(float64(t.load.quantile(0.99))/float64(p.direct.quantile(0.99))),
				us(perReq(t.cpu, t.load.requests)), rssPair(t))
		}
	}
	for _, p := range res.transfers {
		t := p.tun[0]
		fmt.Fprintf(w, "%s (all rounds): %.2f s direct, %.2f s tunnel; server+client CPU %.2f s (%.2f s per GiB)\n",
			p.name, p.direct.elapsed.Seconds(), t.xfer.elapsed.Seconds(), t.cpu.Seconds(),
			t.cpu.Seconds()/(float64(t.xfer.bytes)/(1<<30)))
	}
	if len(res.rps)+len(res.transfers) > 0 || res.ws != nil || res.procs != nil {
		fmt.Fprintf(w, "\nCPU during the tunnel runs, in cores (of %d): server, client, app, load generator, other processes, idle\n", runtime.NumCPU())
	}
	for _, p := range res.rps {
		fmt.Fprintf(w, "  %d conns: %s\n", p.conns, p.tun[0].split)
	}
	if p := res.ws; p != nil {
		fmt.Fprintf(w, "  WebSocket echo: %s\n", p.tun[0].split)
	}
	if p := res.procs; p != nil {
		for i, n := range p.procs {
			fmt.Fprintf(w, "  %d conns, server+client GOMAXPROCS=%d: %s\n", p.conns, n, p.tun[i].split)
		}
	}
	for _, p := range res.transfers {
		fmt.Fprintf(w, "  %s: %s\n", p.name, p.tun[0].split)
	}
	if o.compare != "" {
		printCompare(w, o, res)
	}
	if p := res.tunnels; p != nil {
		fmt.Fprintf(w, "idle tunnels: server %s -> %s with %d tunnels; that client %s (%s per tunnel)\n",
			mib(p.base), mib(p.with), p.n, mib(p.peerRSS), kib(float64(p.peerRSS)/float64(p.n)))
	}
	if p := res.sessions; p != nil {
		fmt.Fprintf(w, "idle sessions: server %s -> %s with %d sessions; the process holding them %s (%s per session); open files: server %d, that process %d (limit %d)\n",
			mib(p.base), mib(p.with), p.n, mib(p.peerRSS), kib(float64(p.peerRSS)/float64(p.n)), p.serverFiles, p.peerFiles, p.fileLimit)
	}
	for _, x := range []struct {
		what string
		p    *idlePhase
	}{{"tunnel", res.tunnels}, {"session", res.sessions}} {
		if x.p == nil || !x.p.haveMem {
			continue
		}
		b, a, n := x.p.memBase, x.p.memWith, float64(x.p.n)
		fmt.Fprintf(w, "server per idle %s, from the Go runtime after a GC: heap in use %s, goroutine stacks %s, %.1f goroutines\n", x.what,
			kib(float64(int64(a.HeapInuse)-int64(b.HeapInuse))/n), kib(float64(int64(a.StackInuse)-int64(b.StackInuse))/n),
			float64(a.Goroutines-b.Goroutines)/n)
	}
	if o.profile != "" {
		fmt.Fprintf(w, "profiles in %s (go tool pprof -top FILE)\n", o.profile)
	}
}

// printCompare sets the -compare build (B) beside the one under test (A).
func printCompare(w io.Writer, o *options, res *results) {
	fmt.Fprintf(w, "\n-compare: A = %s, B = %s (env %q, log level %s), measured alternately in this run\n",
		orDefault(o.porthole, "./cmd/porthole"), o.compare, o.compareEnv, orDefault(o.compareLog, o.logLevel))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	row("figure", "A", "B", "B/A", "A/direct", "B/direct")
	for _, p := range res.rps {
		a, b := p.tun[0].load, p.tun[1].load
		row(fmt.Sprintf("req/s, %d conns", p.conns), fmt.Sprintf("%.0f", a.rate()), fmt.Sprintf("%.0f", b.rate()),
			times(b.rate()/a.rate()), pct(a.rate()/p.direct.rate()), pct(b.rate()/p.direct.rate()))
		for _, q := range []float64{0.5, 0.99} {
			row(fmt.Sprintf("p%.0f latency, %d conns", q*100, p.conns), dur(a.quantile(q)), dur(b.quantile(q)),
				times(float64(b.quantile(q))/float64(a.quantile(q))),
				times(float64(a.quantile(q))/float64(p.direct.quantile(q))), times(float64(b.quantile(q))/float64(p.direct.quantile(q))))
		}
		ca, cb := perReq(p.tun[0].cpu, a.requests), perReq(p.tun[1].cpu, b.requests)
		row(fmt.Sprintf("CPU/request, %d conns", p.conns), us(ca), us(cb), times(cb/ca), "", "")
	}
	if p := res.ws; p != nil {
		a, b := p.tun[0].load, p.tun[1].load
		for _, q := range []float64{0.5, 0.99} {
			row(fmt.Sprintf("WebSocket echo p%.0f", q*100), dur(a.quantile(q)), dur(b.quantile(q)),
				times(float64(b.quantile(q))/float64(a.quantile(q))),
				times(float64(a.quantile(q))/float64(p.direct.quantile(q))), times(float64(b.quantile(q))/float64(p.direct.quantile(q))))
		}
	}
	for _, p := range res.transfers {
		a, b := p.tun[0].xfer, p.tun[1].xfer
		row(fmt.Sprintf("%s, MB/s", p.name), fmt.Sprintf("%.0f", a.mbps()), fmt.Sprintf("%.0f", b.mbps()),
			times(b.mbps()/a.mbps()), pct(a.mbps()/p.direct.mbps()), pct(b.mbps()/p.direct.mbps()))
		ga, gb := p.tun[0].cpu.Seconds()/(float64(a.bytes)/(1<<30)), p.tun[1].cpu.Seconds()/(float64(b.bytes)/(1<<30))
		row(fmt.Sprintf("%s, CPU s/GiB", p.name), fmt.Sprintf("%.2f", ga), fmt.Sprintf("%.2f", gb), times(gb/ga), "", "")
	}
	for _, p := range res.rps {
		row(fmt.Sprintf("RSS max, %d conns, server / client", p.conns), rssPair(p.tun[0]), rssPair(p.tun[1]), "", "", "")
	}
	for _, p := range res.transfers {
		row(fmt.Sprintf("RSS max, %s, server / client", p.name), rssPair(p.tun[0]), rssPair(p.tun[1]), "", "", "")
	}
	tw.Flush()
}

func rssPair(t tunnelRun) string { return mib(t.serverRSS) + " / " + mib(t.clientRSS) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c cpuSplit) String() string {
	if c.wall <= 0 {
		return "-"
	}
	f := func(d time.Duration) float64 { return d.Seconds() / c.wall.Seconds() }
	other := float64(runtime.NumCPU()) - f(c.server) - f(c.client) - f(c.app) - f(c.loader) - f(c.idle)
	return fmt.Sprintf("%.2f, %.2f, %.2f, %.2f, %.2f, %.2f", f(c.server), f(c.client), f(c.app), f(c.loader), max(other, 0), f(c.idle))
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func pct(r float64) string   { return fmt.Sprintf("%.1f%%", 100*r) }
func times(r float64) string { return fmt.Sprintf("%.2fx", r) }
func kib(n float64) string   { return fmt.Sprintf("%.1f KiB", n/1024) }

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

// perReq returns CPU microseconds per request.
func perReq(cpu time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu) / 1e3 / float64(n)
}

func us(v float64) string { return fmt.Sprintf("%.1f µs", v) }

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
