package main

import (
	"fmt"
	"os"
	"time"
)

// forwardRun is one connection count's figures: local and forwarded
// merged over the rounds, and each round's pair.
type forwardRun struct {
	conns      int
	local, fwd loadResult
	rounds     []forwardRound
}

type forwardRound struct {
	localFirst         bool
	localRate, fwdRate float64
	localP99, fwdP99   time.Duration
	localErrs, fwdErrs int
}

type forwardResult struct {
	runs []*forwardRun
}

// runForward: one client at node1 (the holder) with subdomain bench;
// visitors at node1 (local) and at node2 (forwarded to node1 over the
// cluster link), alternating.
func runForward(r *runner) (*forwardResult, error) {
	o := r.o
	c, err := r.startCluster("fwd", 3, "")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	n1, n2 := c.nodes[0], c.nodes[1]
	cl, err := r.startClient("fwd-client", "http", r.app, "--subdomain", "bench", "--server", n1.wsURL(), "--inspect-addr", "off")
	if err != nil {
		return nil, err
	}
	defer cl.stop(os.Interrupt, 10*time.Second)
	if _, err := cl.waitNth(1, isForwarding, 20*time.Second); err != nil {
		return nil, err
	}
	const host = "bench.localhost"
	if err := waitStatus(n2.httpAddr, host, 200, 10*time.Second); err != nil {
		return nil, fmt.Errorf("the name at node2: %w", err)
	}
	// Everything of the run is watched, this process (load generator and
	// origin app) too: what is left of the machine's CPU time is other
	// work on the machine.
	watch := map[string]int{"node1": n1.pid(), "node2": n2.pid(), "node3": c.nodes[2].pid(), "client": cl.pid(), "bench": os.Getpid()}
	res := &forwardResult{}
	for _, conns := range []int{o.conns, 1} {
		fr := &forwardRun{conns: conns}
		res.runs = append(res.runs, fr)
		for round := 1; round <= o.rounds; round++ {
			rd := forwardRound{localFirst: round%2 == 1}
			order := []bool{true, false} // local?
			if !rd.localFirst {
				order = []bool{false, true}
			}
			for _, local := range order {
				at, what := n2.httpAddr, "forwarded (visitor at node2)"
				if local {
					at, what = n1.httpAddr, "local (visitor at node1)"
				}
				logf("forward: %d conns, round %d of %d: %s", conns, round, o.rounds, what)
				lr := runLoad(at, host, o.size, conns, o.warmup, o.duration, watch)
				logf("forward:   %.0f req/s, p50 %s, p99 %s, %d errors", lr.rate(), ms(lr.quantile(0.5)), ms(lr.quantile(0.99)), lr.errors)
				if local {
					rd.localRate, rd.localP99, rd.localErrs = lr.rate(), lr.quantile(0.99), lr.errors
					fr.local.merge(lr)
				} else {
					rd.fwdRate, rd.fwdP99, rd.fwdErrs = lr.rate(), lr.quantile(0.99), lr.errors
					fr.fwd.merge(lr)
				}
			}
			fr.rounds = append(fr.rounds, rd)
		}
	}
	return res, nil
}

// waitStatus polls http://host/ at the node at addr until it answers
// want.
func waitStatus(addr, host string, want int, within time.Duration) error {
	hc := visitor(addr, 1, 5*time.Second)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(within)
	last := 0
	for time.Now().Before(deadline) {
		if last = status(hc, host); last == want {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s at %s: status %d, not %d within %s", host, addr, last, want, within)
}
