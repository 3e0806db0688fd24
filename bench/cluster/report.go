package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything a run measured, printed as plain tables.
type report struct {
	cmdline        string
	built          string
	started, ended time.Time
	cpus           int
	model          string
	load, loadEnd  string
	o              *options

	forward  *forwardResult
	failover *failoverResult
	bind     *bindResult
	tunnels  *tunnelsResult
	errors   []string
}

// Goals of the cluster issue.
const (
	goalRate      = 0.7             // forwarded req/s at least this times local
	goalP99       = 1.5             // forwarded p99 at most this times local
	goalFailover  = 5 * time.Second // client reconnect to 200 at another node
	goalBindP99   = 200 * time.Millisecond
	goalTunnelsAt = 10000
)

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (rep *report) print(w io.Writer) {
	o := rep.o
	fmt.Fprintln(w, "porthole cluster benchmark")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "command:  %s\n", rep.cmdline)
	fmt.Fprintf(w, "binary:   %s\n", rep.built)
	fmt.Fprintf(w, "machine:  nproc %d (%s); load average at start %s, at end %s\n", rep.cpus, rep.model, rep.load, rep.loadEnd)
	fmt.Fprintf(w, "run:      %s, %s\n", rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(w, "setup:    3 nodes (127.0.0.11-13) on one PostgreSQL, a schema per cluster; --no-auth; servers log JSON at %s, clients at info\n", o.logLevel)

	if f := rep.forward; f != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "1. Forwarding cost: %d-byte responses, rounds: %d, each %s after %s warm-up, local and forwarded alternating\n", o.size, o.rounds, o.duration, o.warmup)
		fmt.Fprintln(w, "   local: visitor at node1, which holds the client's session; forwarded: visitor at node2, one hop over the cluster link to node1")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   conns\tvisitor\treq/s\tp50\tp99\terrors\tCPU/req node1+node2+client\tload generator and app\tmachine busy\tnot this run's processes")
		for _, run := range f.runs {
			l, fw := &run.local, &run.fwd
			for _, x := range []struct {
				name string
				r    *loadResult
			}{{"local", l}, {"forwarded", fw}} {
				fmt.Fprintf(tw, "   %d\t%s\t%.0f\t%s\t%s\t%d\t%s\t%.2f CPUs\t%.2f CPUs\t%.2f CPUs\n", run.conns, x.name, x.r.rate(), ms(x.r.quantile(0.5)), ms(x.r.quantile(0.99)), x.r.errors,
					us(x.r.cpuPerRequest("node1", "node2", "client")), x.r.cpu["bench"].Seconds()/x.r.took.Seconds(), x.r.busy.Seconds()/x.r.took.Seconds(), x.r.otherCPU())
			}
			fmt.Fprintf(tw, "   %d\tforwarded/local\t%.2fx\t%.2fx\t%.2fx\t\t%.2fx\t\t\t\n", run.conns, ratio(fw.rate(), l.rate()),
				ratioD(fw.quantile(0.5), l.quantile(0.5)), ratioD(fw.quantile(0.99), l.quantile(0.99)),
				ratioD(fw.cpuPerRequest("node1", "node2", "client"), l.cpuPerRequest("node1", "node2", "client")))
		}
		tw.Flush()
		fmt.Fprintln(w, "   (machine busy: all CPUs, from /proc/stat; not this run's processes: that minus the nodes, the client and this process, at least 0: PostgreSQL, the kernel, other work)")
		fmt.Fprintln(w, "   per round (req/s local, forwarded; p99 local, forwarded):")
		for _, run := range f.runs {
			for i, rd := range run.rounds {
				first := "local ran first"
				if !rd.localFirst {
					first = "forwarded ran first"
				}
				fmt.Fprintf(w, "     %s, round %d: %.0f, %.0f req/s (%.2fx); p99 %s, %s (%.2fx); %s\n", conns(run.conns), i+1,
					rd.localRate, rd.fwdRate, ratio(rd.fwdRate, rd.localRate), ms(rd.localP99), ms(rd.fwdP99), ratioD(rd.fwdP99, rd.localP99), first)
			}
		}
		for _, run := range f.runs {
			rr := ratio(run.fwd.rate(), run.local.rate())
			pr := ratioD(run.fwd.quantile(0.99), run.local.quantile(0.99))
			fmt.Fprintf(w, "   goal at %s: forwarded req/s >= %.1fx local: %.2fx, %s; forwarded p99 <= %.1fx local: %.2fx, %s\n",
				conns(run.conns), goalRate, rr, met(rr >= goalRate), goalP99, pr, met(pr <= goalP99))
		}
	}

	if f := rep.failover; f != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "2. Failover: client with --server node1 --server node2, on node1; SIGKILL node1; visitor at node3 every %s; a fresh cluster each time\n", f.poll)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   #\tkill to client's new Forwarding line\tkill to 200 at node3\tnew Forwarding line to 200 at node3\tnode3's answers before the 200")
		var mx failoverRep
		if len(f.reps) > 0 {
			mx = f.reps[0]
		}
		for i, rp := range f.reps {
			fmt.Fprintf(tw, "   %d\t%s\t%s\t%s\t%s\n", i+1, ms(rp.killToReconnect), ms(rp.killToOK), ms(rp.reconnectToOK), statuses(rp.statuses))
			mx.killToReconnect = max(mx.killToReconnect, rp.killToReconnect)
			mx.killToOK = max(mx.killToOK, rp.killToOK)
			mx.reconnectToOK = max(mx.reconnectToOK, rp.reconnectToOK)
		}
		if len(f.reps) > 0 {
			fmt.Fprintf(tw, "   max\t%s\t%s\t%s\t\n", ms(mx.killToReconnect), ms(mx.killToOK), ms(mx.reconnectToOK))
		}
		tw.Flush()
		if len(f.reps) > 0 {
			fmt.Fprintf(w, "   goal: 200 at another node <= %s after the client reconnects: max %s, %s (%d of %d repetitions)\n",
				goalFailover, ms(mx.reconnectToOK), met(mx.reconnectToOK <= goalFailover && len(f.reps) == o.failovers), len(f.reps), o.failovers)
		}
	}

	if b := rep.bind; b != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "3. Bind visibility: %d new names bound at node1, one `porthole http --subdomain NAME` process each; a visitor at every node every %s\n", o.binds, b.poll)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   until every node answers 200, from\tn\tmin\tp50\tp99\tmax")
		for _, x := range []struct {
			name string
			d    []time.Duration
		}{{"the client's Forwarding line", b.fromOnline}, {"node1's first 200", b.fromNode1}} {
			fmt.Fprintf(tw, "   %s\t%d\t%s\t%s\t%s\t%s\n", x.name, len(x.d), ms(quantile(x.d, 0)), ms(quantile(x.d, 0.5)), ms(quantile(x.d, 0.99)), ms(quantile(x.d, 1)))
		}
		tw.Flush()
		fmt.Fprintf(w, "   names not at every node within 10 s: %d\n", b.missed)
		p99 := quantile(b.fromOnline, 0.99)
		fmt.Fprintf(w, "   goal: p99 <= %s: %s from the Forwarding line, %s\n", goalBindP99, ms(p99), met(p99 <= goalBindP99 && b.missed == 0 && len(b.fromOnline) > 0))
	}

	if t := rep.tunnels; t != nil {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "4. Tunnels: %d HTTP tunnels in %d `porthole start --config` clients (client j at node j mod 3); server [limits] control_burst = %d\n", t.n, t.clients, t.controlBurst)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   node\tits tunnels\tporthole_tunnels\troute map\tRSS before\tRSS after\tper own tunnel\tper tunnel in the cluster\tsample answered 200")
		for k := range t.held {
			get := func(v []float64) string {
				if k < len(v) {
					return fmt.Sprintf("%.0f", v[k])
				}
				return "-"
			}
			var before, after int64
			if k < len(t.before) {
				before = t.before[k]
			}
			if k < len(t.after) {
				after = t.after[k]
			}
			sample := "-"
			if k < len(t.sampleOK) {
				sample = fmt.Sprintf("%d of %d", t.sampleOK[k], t.sampleN)
			}
			per, perAll := "-", "-"
			if after > 0 && t.held[k] > 0 {
				per = kib(float64(after-before) / float64(t.held[k]))
				perAll = kib(float64(after-before) / float64(t.n))
			}
			fmt.Fprintf(tw, "   node%d\t%d\t%s\t%s\t%.1f MiB\t%.1f MiB\t%s\t%s\t%s\n", k+1, t.held[k], get(t.bound), get(t.routes),
				mib(before), mib(after), per, perAll, sample)
		}
		tw.Flush()
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   node\tlive heap before\tlive heap after\tper own tunnel\tper tunnel in the cluster\t(Go heap in use right after a forced GC)")
		for k := range t.held {
			if k >= len(t.heapBefore) || k >= len(t.heapAfter) || t.heapBefore[k] == 0 || t.heapAfter[k] == 0 {
				continue
			}
			d := t.heapAfter[k] - t.heapBefore[k]
			fmt.Fprintf(tw, "   node%d\t%.1f MiB\t%.1f MiB\t%s\t%s\t\n", k+1, t.heapBefore[k]/(1<<20), t.heapAfter[k]/(1<<20), kib(d/float64(t.held[k])), kib(d/float64(t.n)))
		}
		tw.Flush()
		var crss []string
		for j, v := range t.clientRSS {
			crss = append(crss, fmt.Sprintf("%d tunnels %.1f MiB", t.clientHeld[j], mib(v)))
		}
		fmt.Fprintf(w, "   clients' RSS: %s\n", strings.Join(crss, "; "))
		fmt.Fprintf(w, "   clients started to the last Forwarding line: %s; to every node's route map holding all %d names: %s\n",
			t.bindTook.Round(time.Millisecond), t.n, t.routesTook.Round(time.Millisecond))
		if t.n < goalTunnelsAt {
			fmt.Fprintf(w, "   this run measured %d tunnels, not %d\n", t.n, goalTunnelsAt)
		}
	}

	if len(rep.errors) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "failed phases:")
		for _, e := range rep.errors {
			fmt.Fprintf(w, "   %s\n", e)
		}
	}
}

func conns(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return fmt.Sprintf("%d connections", n)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ratioD(a, b time.Duration) float64 { return ratio(float64(a), float64(b)) }

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f us", float64(d)/float64(time.Microsecond))
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// statuses prints node3's answers, e.g. "503 x41".
func statuses(m map[int]int) string {
	var parts []string
	for _, code := range []int{-1, 404, 421, 502, 503} {
		if n := m[code]; n > 0 {
			name := fmt.Sprint(code)
			if code == -1 {
				name = "no answer"
			}
			parts = append(parts, fmt.Sprintf("%s x%d", name, n))
		}
	}
	for code, n := range m {
		switch code {
		case -1, 404, 421, 502, 503:
		default:
			parts = append(parts, fmt.Sprintf("%d x%d", code, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
