package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tunnelsResult: o.tunnels names held by o.clients client processes,
// client j connected to node j mod 3.
type tunnelsResult struct {
	n, clients   int
	controlBurst int
	held         []int     // tunnels per node as planned
	bound        []float64 // porthole_tunnels per node once all were up
	routes       []float64 // porthole_cluster_routes per node once all were up
	before       []int64   // node RSS before the clients
	after        []int64   // node RSS with every tunnel bound
	heapBefore   []float64 // node live heap (after a forced GC) before the clients
	heapAfter    []float64 // and with every tunnel bound
	clientRSS    []int64
	clientHeld   []int
	bindTook     time.Duration // clients started to the last Forwarding line
	routesTook   time.Duration // clients started to every node's route map holding every name
	sampleN      int
	sampleOK     []int // per node
}

// runTunnels binds o.tunnels HTTP tunnels spread over the nodes with
// `porthole start --config` files of [tunnels.NAME] tables, and reads
// each node's RSS before and after.
func runTunnels(r *runner) (*tunnelsResult, error) {
	o := r.o
	res := &tunnelsResult{n: o.tunnels, clients: o.clients}
	per := (o.tunnels + o.clients - 1) / o.clients
	// A client sends one bind per tunnel at connect, all at once; the
	// per-session control burst (200 by default) must be larger than that.
	res.controlBurst = per + 200
	// The profiler (behind an admin token) lets the phase force a GC and
	// read the live heap next to the RSS, which also holds garbage not
	// yet collected and freed memory not yet given back.
	token := make([]byte, 16)
	rand.Read(token)
	admin := hex.EncodeToString(token)
	toml := fmt.Sprintf("admin_token = %q\n\n[limits]\ncontrol_burst = %d\n\n[metrics]\npprof = true\n", admin, res.controlBurst)
	c, err := r.startCluster("tun", 3, toml)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	res.held = make([]int, len(c.nodes))
	res.before, res.heapBefore = memory(c, admin, o.settle)

	// Client j holds names [lo, hi) of t00000..; contiguous slices.
	type job struct {
		p      *proc
		n      int
		lo, hi int
	}
	var jobs []*job
	for j := range o.clients {
		lo, hi := j*o.tunnels/o.clients, (j+1)*o.tunnels/o.clients
		var b strings.Builder
		for i := lo; i < hi; i++ {
			name := fmt.Sprintf("t%05d", i)
			fmt.Fprintf(&b, "[tunnels.%s]\nproto = \"http\"\naddr = %q\nsubdomain = %q\n\n", name, r.app, name)
		}
		cfg := filepath.Join(r.dir, fmt.Sprintf("tun-client%d.toml", j+1))
		if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		jobs = append(jobs, &job{n: j % len(c.nodes), lo: lo, hi: hi})
		res.held[j%len(c.nodes)] += hi - lo
		res.clientHeld = append(res.clientHeld, hi-lo)
	}
	logf("tunnels: %d tunnels in %d clients, %v per node", o.tunnels, o.clients, res.held)
	started := time.Now()
	defer func() {
		var wg sync.WaitGroup
		for _, jb := range jobs {
			wg.Add(1)
			go func() { defer wg.Done(); jb.p.stop(os.Interrupt, 20*time.Second) }()
		}
		wg.Wait()
	}()
	for j, jb := range jobs {
		cfg := filepath.Join(r.dir, fmt.Sprintf("tun-client%d.toml", j+1))
		p, err := r.startClient(fmt.Sprintf("tun-client%d", j+1), "start", "--config", cfg,
			"--server", c.nodes[jb.n].wsURL(), "--inspect-addr", "off")
		if err != nil {
			jobs = jobs[:j]
			return nil, err
		}
		jb.p = p
	}
	var last time.Time
	for j, jb := range jobs {
		l, err := jb.p.waitNth(jb.hi-jb.lo, isForwarding, 15*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("client %d: %w", j+1, err)
		}
		if l.at.After(last) {
			last = l.at
		}
	}
	res.bindTook = last.Sub(started)
	logf("tunnels: every client printed its Forwarding lines after %s", res.bindTook.Round(time.Millisecond))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res.routes, res.bound = res.routes[:0], res.bound[:0]
		full := true
		for _, n := range c.nodes {
			rt, _ := metric(n.adminAddr, "porthole_cluster_routes")
			tn, _ := metric(n.adminAddr, "porthole_tunnels")
			res.routes, res.bound = append(res.routes, rt), append(res.bound, tn)
			full = full && rt >= float64(o.tunnels)
		}
		if full {
			res.routesTook = time.Since(started)
			break
		}
		if time.Now().After(deadline) {
			logf("tunnels: route maps not full after 2 minutes: %v", res.routes)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.after, res.heapAfter = memory(c, admin, o.settle)
	for _, jb := range jobs {
		res.clientRSS = append(res.clientRSS, steadyRSS(jb.p.pid()))
	}

	// A sample of names, evenly spread, at every node.
	res.sampleN = min(o.sample, o.tunnels)
	for _, n := range c.nodes {
		hc := visitor(n.httpAddr, 4, 5*time.Second)
		ok := 0
		for s := range res.sampleN {
			i := s * o.tunnels / res.sampleN
			if status(hc, fmt.Sprintf("t%05d.localhost", i)) == 200 {
				ok++
			}
		}
		hc.CloseIdleConnections()
		res.sampleOK = append(res.sampleOK, ok)
	}
	logf("tunnels: sample of %d names answered 200 at the nodes: %v", res.sampleN, res.sampleOK)
	return res, nil
}

// memory reads every node's RSS and live heap the same way before and
// after: a forced GC, settle for the runtime to give freed memory back
// (a node fresh from its start holds close to 20 MiB of start-up garbage
// until its next GC), the median of 5 RSS samples, then the live heap.
func memory(c *cluster, admin string, settle time.Duration) (rss []int64, heap []float64) {
	for _, n := range c.nodes {
		liveHeap(n.adminAddr, admin)
	}
	time.Sleep(settle)
	for _, n := range c.nodes {
		rss = append(rss, steadyRSS(n.pid()))
	}
	for _, n := range c.nodes {
		heap = append(heap, liveHeap(n.adminAddr, admin))
	}
	return rss, heap
}

// liveHeap forces a GC in the node (the profiler's heap profile with
// gc=1) and then reads its heap in use, go_memstats_heap_alloc_bytes;
// 0 when either fails.
func liveHeap(adminAddr, token string) float64 {
	req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/debug/pprof/heap?gc=1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		logf("heap profile at %s: %s", adminAddr, resp.Status)
		return 0
	}
	v, err := metric(adminAddr, "go_memstats_heap_alloc_bytes")
	if err != nil {
		return 0
	}
	return v
}

// metric reads one unlabelled gauge or counter from a node's /metrics.
func metric(admin, name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s at %s", name, admin)
}
