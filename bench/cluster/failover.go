package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// failoverRep is one SIGKILL of the node holding a client's session.
type failoverRep struct {
	killToReconnect time.Duration // kill to the client's new Forwarding line
	killToOK        time.Duration // kill to the first 200 at node3
	reconnectToOK   time.Duration // the new Forwarding line to the first 200 at node3
	polls           int
	statuses        map[int]int // what node3 answered before the 200, by status (-1: no answer)
	first, second   string      // the servers the client connected to
}

type failoverResult struct {
	poll time.Duration
	reps []failoverRep
}

var connectedRE = regexp.MustCompile(`msg=connected server=(\S+)`)

func isConnected(l string) bool { return connectedRE.MatchString(l) }

// runFailover repeats on a fresh cluster each time: a client with
// --server node1 --server node2, connected to node1; SIGKILL of node1;
// a visitor at node3 asks every poll interval until it gets 200.
func runFailover(r *runner) (*failoverResult, error) {
	res := &failoverResult{poll: r.o.failPoll}
	for i := 1; i <= r.o.failovers; i++ {
		rep, err := failoverOnce(r, i)
		if err != nil {
			return res, fmt.Errorf("repetition %d: %w", i, err)
		}
		logf("failover %d: client back %s after the kill; node3 answered 200 %s after the kill, %s after the client's reconnect; before that %v",
			i, ms(rep.killToReconnect), ms(rep.killToOK), ms(rep.reconnectToOK), rep.statuses)
		res.reps = append(res.reps, rep)
	}
	return res, nil
}

func failoverOnce(r *runner, i int) (failoverRep, error) {
	var rep failoverRep
	c, err := r.startCluster(fmt.Sprintf("fo%d", i), 3, "")
	if err != nil {
		return rep, err
	}
	defer c.stop()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	cl, err := r.startClient(fmt.Sprintf("fo%d-client", i), "http", r.app, "--subdomain", "failover",
		"--server", n1.wsURL(), "--server", n2.wsURL(), "--inspect-addr", "off")
	if err != nil {
		return rep, err
	}
	defer cl.stop(os.Interrupt, 10*time.Second)
	if _, err := cl.waitNth(1, isForwarding, 20*time.Second); err != nil {
		return rep, err
	}
	if l, err := cl.waitNth(1, isConnected, time.Second); err == nil {
		rep.first = connectedRE.FindStringSubmatch(l.text)[1]
	}
	if rep.first != n1.wsURL() {
		return rep, fmt.Errorf("the client connected to %q, not node1 (%s)", rep.first, n1.wsURL())
	}
	const host = "failover.localhost"
	if err := waitStatus(n3.httpAddr, host, 200, 10*time.Second); err != nil {
		return rep, fmt.Errorf("before the kill: %w", err)
	}
	// The visitor's connection to node3 is open before the kill.
	hc := visitor(n3.httpAddr, 1, 2*time.Second)
	defer hc.CloseIdleConnections()
	if code := status(hc, host); code != 200 {
		return rep, fmt.Errorf("before the kill: node3 answered %d", code)
	}

	killed := time.Now()
	if err := n1.kill(); err != nil {
		return rep, err
	}
	rep.statuses = map[int]int{}
	var ok time.Time
	for time.Since(killed) < 60*time.Second {
		next := time.Now().Add(r.o.failPoll)
		code := status(hc, host)
		rep.polls++
		if code == 200 {
			ok = time.Now()
			break
		}
		rep.statuses[code]++
		time.Sleep(time.Until(next))
	}
	if ok.IsZero() {
		return rep, fmt.Errorf("node3 did not answer 200 within 60 s of the kill: %v", rep.statuses)
	}
	// The new session's URL has node2's port: the client prints a new
	// Forwarding line (stdout, unbuffered; its log lines wait in a
	// buffer for up to 100 ms).
	online, err := cl.waitNth(2, isForwarding, 5*time.Second)
	if err != nil {
		return rep, fmt.Errorf("node3 answered 200 but the client printed no second Forwarding line: %w", err)
	}
	if l, err := cl.waitNth(2, isConnected, time.Second); err == nil {
		rep.second = connectedRE.FindStringSubmatch(l.text)[1]
	}
	if rep.second != n2.wsURL() {
		return rep, errors.New("the client's second session is not at node2: " + strings.TrimSpace(rep.second))
	}
	rep.killToReconnect = online.at.Sub(killed)
	rep.killToOK = ok.Sub(killed)
	rep.reconnectToOK = ok.Sub(online.at)
	return rep, nil
}
