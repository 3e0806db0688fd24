// Command compress measures tunnel compression: bytes on the wire and MB/s
// for JSON text and for already-compressed data, with and without
// compression, through real multiplexed sessions on loopback.
//
// Each mode is a session as porthole builds it (WebSocket, multiplexer,
// header coalescing) with a different compression. Between the two ends
// sits a relay that counts the bytes on the wire and can shape them to a
// link rate, to show when compression pays.
//
//	go run ./bench/compress                     # every mode, unshaped and at 1000, 100 and 10 Mbit/s
//	go run ./bench/compress -modes off,zstd -links 0
//
// It is a program, not a test: timings on a shared machine are figures to
// read, not assertions. docs/compression.md has a run's results.
package main

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type options struct {
	modes    []string
	links    []float64 // Mbit/s, 0 = unshaped
	size     int       // bytes per bulk transfer
	shaped   float64   // seconds an uncompressed transfer takes on a shaped link
	rounds   int       // interactive round trips
	repeat   int       // bulk runs per figure
	sessions int       // for the memory figure
}

func main() {
	var o options
	modes := flag.String("modes", "off,zstd,deflate,deflate-nct,s2", "comma-separated modes: off and zstd (porthole's sessions without and with --compress), deflate (WebSocket permessage-deflate with context takeover), deflate-nct (without), s2, zstd-256k (zstd with a 256 KiB window)")
	links := flag.String("links", "0,1000,100,10", "comma-separated link rates in Mbit/s; 0 is unshaped loopback")
	flag.IntVar(&o.size, "size", 64<<20, "bytes per bulk transfer, unshaped")
	flag.Float64Var(&o.shaped, "shaped-seconds", 1.5, "on a shaped link, send what the link carries in this many seconds (at most -size)")
	flag.IntVar(&o.rounds, "rounds", 2000, "interactive round trips (300-byte JSON messages)")
	flag.IntVar(&o.repeat, "repeat", 3, "bulk runs per figure; the median is shown")
	flag.IntVar(&o.sessions, "sessions", 100, "sessions for the memory figure")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	o.modes = strings.Split(*modes, ",")
	for _, l := range strings.Split(*links, ",") {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad -links:", err)
			os.Exit(2)
		}
		o.links = append(o.links, v)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(o options) error {
	fmt.Fprintln(os.Stderr, "generating data ...")
	data := map[string][]byte{
		"json":   genJSON(o.size),
		"random": genRandom(o.size),
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tlink\tdata\tdirection\tpayload MB\twire MB\twire/payload\tMB/s\tCPU ms/MB\t")
	for _, link := range o.links {
		for _, kind := range []string{"json", "random"} {
			for _, name := range o.modes {
				m, err := modeByName(name)
				if err != nil {
					return err
				}
				payload := data[kind]
				if link > 0 {
					n := int(link * 1e6 / 8 * o.shaped)
					payload = payload[:max(1<<20, min(len(payload), n))]
				}
				for _, dir := range []string{"to client", "to server"} {
					var runs []bulkResult
					repeat := o.repeat
					if link > 0 {
						repeat = 1 // the link, not the machine, sets the pace
					}
					for range repeat {
						r, err := bulk(m, link, payload, dir == "to server")
						if err != nil {
							return fmt.Errorf("%s %s %s: %w", name, kind, dir, err)
						}
						runs = append(runs, r)
					}
					// The median run by time: the machine may be shared.
					slices.SortFunc(runs, func(a, b bulkResult) int { return cmp.Compare(a.elapsed, b.elapsed) })
					r := runs[len(runs)/2]
					// CPU time on a shaped link includes the relay's pacing:
					// not a figure of the session.
					cpu := "-"
					if link == 0 {
						cpu = fmt.Sprintf("%.1f", float64(r.cpu.Milliseconds())/mb(r.payload))
					}
					line := fmt.Sprintf("%s\t%s\t%s\t%s\t%.1f\t%.2f\t%.2f\t%.1f\t%s\t", name, linkName(link), kind, dir,
						mb(r.payload), mb(r.wire), float64(r.wire)/float64(r.payload), mb(r.payload)/r.elapsed.Seconds(), cpu)
					fmt.Fprintln(tw, line)
					fmt.Fprintln(os.Stderr, strings.ReplaceAll(line, "\t", " "))
				}
			}
		}
	}
	tw.Flush()
	fmt.Println()

	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tround trips\tp50 µs\tp99 µs\twire bytes/round trip\t")
	for _, name := range o.modes {
		m, _ := modeByName(name)
		r, err := interactive(m, o.rounds)
		if err != nil {
			return fmt.Errorf("%s interactive: %w", name, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t\n", name, o.rounds, r.p50.Microseconds(), r.p99.Microseconds(), float64(r.wire)/float64(o.rounds))
		fmt.Fprintln(os.Stderr, "interactive:", name)
	}
	tw.Flush()
	fmt.Println()

	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tsessions\tKiB per session, both ends\t")
	for _, name := range o.modes {
		m, _ := modeByName(name)
		per, err := memory(m, o.sessions)
		if err != nil {
			return fmt.Errorf("%s memory: %w", name, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t\n", name, o.sessions, per/1024)
		fmt.Fprintln(os.Stderr, "memory:", name)
	}
	tw.Flush()
	return nil
}

func linkName(mbit float64) string {
	if mbit == 0 {
		return "loopback"
	}
	return fmt.Sprintf("%g Mbit/s", mbit)
}

func mb(n int64) float64 { return float64(n) / 1e6 }

type bulkResult struct {
	payload, wire int64
	elapsed       time.Duration
	cpu           time.Duration // user+system time of this process, both ends
}
