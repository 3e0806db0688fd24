// Command isolation measures how well porthole's limits isolate tenants:
// while one tunnel receives a flood at 20 times its request limit and
// another user saturates their bandwidth limit in both directions, it
// measures a third tunnel's latency and reports its p99 as a ratio to the
// p99 the same tunnel has without the abuse, in the same run.
//
// Everything runs on loopback with the real porthole binary: one server
// with the [limits] of the operator contract, three users, three client
// processes and three local apps (in this process). Unloaded and loaded
// phases alternate, so that other activity on the machine affects both
// alike, and the samples of each condition are pooled.
//
//	go run ./bench/isolation                 # builds porthole; about 4 minutes
//	go run ./bench/isolation -rounds 5 -phase 10s -json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
	"github.com/porthole/porthole/bench/internal/procs"
)

type options struct {
	bin         string
	rounds      int
	phase       time.Duration
	rps         float64 // the server's requests_per_second
	burst       int
	bandwidth   int64 // bytes per second per user, each direction
	floodFactor float64
	victimRate  float64 // the measured tunnel's request rate
	jsonOut     bool
	keep        bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "porthole", "", "porthole binary to run (default: build it from this module)")
	flag.IntVar(&o.rounds, "rounds", 20, "unloaded/loaded phase pairs")
	flag.DurationVar(&o.phase, "phase", 4*time.Second, "length of each phase")
	flag.Float64Var(&o.rps, "rps", 50, "server limit: requests_per_second per tunnel")
	flag.IntVar(&o.burst, "burst", 100, "server limit: burst")
	flag.Int64Var(&o.bandwidth, "bandwidth", 10<<20, "server limit: bandwidth_bytes_per_second per user")
	flag.Float64Var(&o.floodFactor, "flood", 20, "flood rate as a multiple of requests_per_second")
	flag.Float64Var(&o.victimRate, "victim-rate", 40, "request rate on the measured tunnel (keep it under the limit)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, database)")
	// The abuse process (started by the run itself).
	role := flag.String("role", "", "")
	addr := flag.String("addr", "", "")
	floodURL := flag.String("flood-url", "", "")
	hogURL := flag.String("hog-url", "", "")
	floodRate := flag.Float64("flood-rate", 0, "")
	flag.Parse()
	if *role == "apps" {
		runApps()
		return
	}
	if *role == "abuse" {
		runAbuse(*addr, *floodURL, *hogURL, *floodRate)
		return
	}
	log.SetFlags(log.Ltime)

	dir, err := os.MkdirTemp("", "porthole-isolation-")
	if err != nil {
		log.Fatal(err)
	}
	if o.keep {
		log.Printf("work directory: %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.bin == "" {
		o.bin = filepath.Join(dir, "porthole")
		if runtime.GOOS == "windows" {
			o.bin += ".exe"
		}
		log.Printf("building porthole")
		if err := procs.BuildPorthole(o.bin); err != nil {
			log.Fatalf("go build: %v", err)
		}
	}
	res, err := run(context.Background(), dir, o)
	if err != nil {
		log.Fatal(err)
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return
	}
	res.print(os.Stdout)
}

// result is what a run reports.
type result struct {
	Config struct {
		RequestsPerSecond float64 `json:"requests_per_second"`
		Burst             int     `json:"burst"`
		BandwidthBytes    int64   `json:"bandwidth_bytes_per_second"`
		FloodRate         float64 `json:"flood_rate"`
		VictimRate        float64 `json:"victim_rate"`
		Rounds            int     `json:"rounds"`
		Phase             string  `json:"phase"`
		CPUs              int     `json:"cpus"`
	} `json:"config"`
	Unloaded harness.LatencyStats `json:"unloaded"`
	Loaded   harness.LatencyStats `json:"loaded"`
	// DirectUnloaded and DirectLoaded are the control: the measured
	// tunnel's app at the same rate, not through porthole.
	DirectUnloaded harness.LatencyStats `json:"direct_unloaded"`
	DirectLoaded   harness.LatencyStats `json:"direct_loaded"`
	// P99Ratio is the loaded p99 over the unloaded p99, DirectP99Ratio
	// the same for the control.
	P99Ratio       float64 `json:"p99_ratio"`
	DirectP99Ratio float64 `json:"direct_p99_ratio"`
	// RoundRatios is each round's loaded p99 over its unloaded p99, and
	// MedianRoundRatio their median: less sensitive than the pooled
	// ratio to a burst of other activity on the machine in one phase.
	RoundRatios      []float64 `json:"round_ratios"`
	MedianRoundRatio float64   `json:"median_round_ratio"`
	// Flood: requests sent and how they were answered.
	FloodSent, Flood200, Flood429, FloodOther int64
	FloodAchieved                             float64 `json:"flood_achieved_per_second"`
	// Hog: the bandwidth user's throughput each way while loaded.
	HogDownMiBps, HogUpMiBps float64
	// LimitHits from the server's /metrics at the end.
	LimitHits map[string]float64 `json:"limit_hits"`
	// CPUUnloaded and CPULoaded are each process's CPU use, in percent
	// of one core, in each condition.
	CPUUnloaded map[string]float64 `json:"cpu_unloaded"`
	CPULoaded   map[string]float64 `json:"cpu_loaded"`
}

func (r *result) print(w *os.File) {
	fmt.Fprintf(w, "limits: requests_per_second=%g burst=%d bandwidth=%.0f MiB/s; %d CPUs; %d rounds of %s unloaded + %s loaded\n",
		r.Config.RequestsPerSecond, r.Config.Burst, float64(r.Config.BandwidthBytes)/(1<<20), r.Config.CPUs, r.Config.Rounds, r.Config.Phase, r.Config.Phase)
	fmt.Fprintf(w, "measured tunnel at %g req/s:\n", r.Config.VictimRate)
	fmt.Fprintf(w, "  unloaded: %s\n", r.Unloaded)
	fmt.Fprintf(w, "  loaded:   %s\n", r.Loaded)
	fmt.Fprintf(w, "  p99 ratio loaded/unloaded: %.2f (target <= 2); median of the rounds' ratios %.2f\n", r.P99Ratio, r.MedianRoundRatio)
	fmt.Fprintf(w, "control, the same app not through porthole:\n")
	fmt.Fprintf(w, "  unloaded: %s\n", r.DirectUnloaded)
	fmt.Fprintf(w, "  loaded:   %s\n", r.DirectLoaded)
	fmt.Fprintf(w, "  p99 ratio loaded/unloaded: %.2f\n", r.DirectP99Ratio)
	fmt.Fprintf(w, "flooded tunnel: %d requests at %.0f/s achieved (target %g/s): %d served, %d refused with 429, %d other\n",
		r.FloodSent, r.FloodAchieved, r.Config.FloodRate, r.Flood200, r.Flood429, r.FloodOther)
	fmt.Fprintf(w, "bandwidth user: %.2f MiB/s down, %.2f MiB/s up (limit %.0f MiB/s each way)\n",
		r.HogDownMiBps, r.HogUpMiBps, float64(r.Config.BandwidthBytes)/(1<<20))
	fmt.Fprintf(w, "CPU, percent of one core, unloaded -> loaded:\n")
	names := slices.Sorted(maps.Keys(r.CPULoaded))
	total := [2]float64{}
	for _, k := range names {
		fmt.Fprintf(w, "  %-22s %5.1f -> %5.1f\n", k, r.CPUUnloaded[k], r.CPULoaded[k])
		total[0] += r.CPUUnloaded[k]
		total[1] += r.CPULoaded[k]
	}
	fmt.Fprintf(w, "  %-22s %5.1f -> %5.1f (of %d00)\n", "all", total[0], total[1], r.Config.CPUs)
	fmt.Fprintf(w, "limit hits:")
	for _, k := range []string{"tunnel_requests_per_second", "user_bandwidth"} {
		fmt.Fprintf(w, " %s=%.0f", k, r.LimitHits[k])
	}
	fmt.Fprintln(w)
}
