package main

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// bindResult: for each name, the time from the client's Forwarding
// line, and from node1's first 200, to the moment every node answered
// 200.
type bindResult struct {
	poll       time.Duration
	fromOnline []time.Duration
	fromNode1  []time.Duration
	missed     int // names some node did not answer within 10 s
}

// runBind binds o.binds new names at node1, one `porthole http` client
// process each (started, timed, stopped in turn), while a visitor at
// every node asks for the name every poll interval.
func runBind(r *runner) (*bindResult, error) {
	c, err := r.startCluster("bind", 3, "")
	if err != nil {
		return nil, err
	}
	defer c.stop()
	res := &bindResult{poll: r.o.bindPoll}
	hcs := make([]*http.Client, len(c.nodes))
	for k, n := range c.nodes {
		hcs[k] = visitor(n.httpAddr, 1, 2*time.Second)
		defer hcs[k].CloseIdleConnections()
	}
	for i := 1; i <= r.o.binds; i++ {
		name := fmt.Sprintf("vis%04d", i)
		host := name + ".localhost"
		firstOK := make([]time.Time, len(c.nodes))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for k := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					next := time.Now().Add(r.o.bindPoll)
					if status(hcs[k], host) == 200 {
						firstOK[k] = time.Now()
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Until(next)):
					}
				}
			}()
		}
		cl, err := r.startClient("bind-"+name, "http", r.app, "--subdomain", name, "--server", c.nodes[0].wsURL(), "--inspect-addr", "off")
		if err != nil {
			close(stop)
			wg.Wait()
			return res, err
		}
		// Its Forwarding line (stdout, unbuffered) says the bind is done.
		online, err := cl.waitNth(1, isForwarding, 20*time.Second)
		if err != nil {
			close(stop)
			wg.Wait()
			cl.stop(os.Interrupt, 10*time.Second)
			return res, err
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			close(stop)
			<-done
		}
		cl.stop(os.Interrupt, 10*time.Second)
		if slices.ContainsFunc(firstOK, time.Time.IsZero) {
			res.missed++
			logf("bind %s: not at every node within 10 s: %v", name, firstOK)
			continue
		}
		all := slices.MaxFunc(firstOK, time.Time.Compare)
		res.fromOnline = append(res.fromOnline, all.Sub(online.at))
		res.fromNode1 = append(res.fromNode1, all.Sub(firstOK[0]))
		if i%10 == 0 {
			logf("bind: %d of %d names; last: every node %s after the Forwarding line, %s after node1", i, r.o.binds, ms(all.Sub(online.at)), ms(all.Sub(firstOK[0])))
		}
	}
	return res, nil
}

// quantile of d (sorted in place).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}
