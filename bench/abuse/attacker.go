package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// params is what the run tells an attacker process: where to attack,
// and how hard.
type params struct {
	Attack string `json:"attack"`
	HTTP   string `json:"http"`            // the public listener
	HTTPS  string `json:"https,omitempty"` // the public HTTPS listener, on a "tls" server
	Tunnel string `json:"tunnel"`          // the tunnel listener, host:port
	Host   string `json:"host,omitempty"`  // the attacker's own tunnel, for the attacks that have one
	Domain string `json:"domain"`
	Key    string `json:"key,omitempty"` // an API key for raw sessions on a server with auth
	// Conns is the attack's size: stalled readers, slowloris or idle
	// connections, or distinct addresses for the spray.
	Conns   int     `json:"conns,omitempty"`
	Workers int     `json:"workers,omitempty"`
	Rate    float64 `json:"rate,omitempty"` // handshakes per second
}

// attackFunc runs an attack until ctx ends, counting what happens in c.
type attackFunc func(ctx context.Context, p params, c *counters) error

var attackFuncs = map[string]attackFunc{
	"stalled-readers": stalledReaders,
	"h2-streams":      h2Streams,
	"basic-auth":      basicAuthGuess,
	"ping-flood":      pingFlood,
	"frame-floods":    frameFloods,
	"huge-headers":    hugeHeaders,
	"slowloris":       slowloris,
	"handshake-flood": handshakeFlood,
	"idle-conns":      idleConns,
	"address-spray":   addressSpray,
}

// attackStats is what an attacker process prints when it is stopped.
type attackStats struct {
	Counts  map[string]int64 `json:"counts"`
	Seconds float64          `json:"seconds"`
	Err     string           `json:"error,omitempty"`
}

// counters are an attack's named counts, safe for concurrent use.
type counters struct {
	mu sync.Mutex
	m  map[string]int64
}

func newCounters() *counters { return &counters{m: map[string]int64{}} }

func (c *counters) add(k string, n int64) {
	c.mu.Lock()
	c.m[k] += n
	c.mu.Unlock()
}

// peak keeps the largest v seen under k.
func (c *counters) peak(k string, v int64) {
	c.mu.Lock()
	c.m[k] = max(c.m[k], v)
	c.mu.Unlock()
}

// since adds the milliseconds since t under k+"_ms" and one under k, so
// that the run can report a mean.
func (c *counters) since(k string, t time.Time) {
	c.mu.Lock()
	c.m[k]++
	c.m[k+"_ms"] += time.Since(t).Milliseconds()
	c.mu.Unlock()
}

func (c *counters) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

// runAttacker is an attacker process: it runs the attack named in the
// JSON params until interrupted, then prints its counts as JSON.
func runAttacker(raw string) {
	var p params
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		fmt.Fprintln(os.Stderr, "attacker: bad params:", err)
		os.Exit(2)
	}
	f := attackFuncs[p.Attack]
	if f == nil {
		fmt.Fprintln(os.Stderr, "attacker: no attack", p.Attack)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCounters()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f(ctx, p, c) }()
	var err error
	select {
	case err = <-done:
		if err == nil {
			<-ctx.Done() // an attack that finished early still waits for the phase's end
		}
	case <-ctx.Done():
		// Give the attack a moment to count its last outcomes.
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			fmt.Fprintln(os.Stderr, "attacker: the attack did not stop within 5 s of the interrupt")
		}
	}
	st := attackStats{Counts: c.snapshot(), Seconds: time.Since(start).Seconds()}
	if err != nil {
		st.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(st)
}
