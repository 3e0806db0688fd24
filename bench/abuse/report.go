package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/porthole/porthole/bench/internal/harness"
)

// result is what a run reports (-json prints it as it is).
type result struct {
	Date     string          `json:"date"`
	Machine  string          `json:"machine"`
	CPUs     int             `json:"cpus"`
	Duration string          `json:"phase"`
	Load     string          `json:"legitimate_load"`
	Servers  []*serverResult `json:"servers"`
	Attacks  []*attackResult `json:"attacks"`
}

// serverResult is one server's unloaded measurement.
type serverResult struct {
	Name       string               `json:"name"`
	Command    string               `json:"command"`
	Unloaded   harness.LatencyStats `json:"unloaded"`
	Control    harness.LatencyStats `json:"control_unloaded"`
	Errors     map[string]int       `json:"errors_unloaded,omitempty"`
	Goroutines int                  `json:"goroutines"`
	RSSMiB     float64              `json:"rss_mib"`
	// LegitConnections is how many connections the legitimate visitors
	// opened over the server's whole run: one each unless some were
	// dropped. LateSlots counts the schedule slots they skipped after
	// falling 2 s behind.
	LegitConnections int64 `json:"legit_connections"`
	LateSlots        int64 `json:"late_slots"`
	// Instances is how many servers of the kind ran: one for the
	// unloaded measurement and one per attack.
	Instances int `json:"instances"`
	Visitors  int `json:"visitors"` // legitimate visitors on each
}

// attackResult is one attack's measurement.
type attackResult struct {
	Name   string `json:"name"`
	Title  string `json:"title"`
	Server string `json:"server"`
	Actor  string `json:"actor"`
	Budget string `json:"budget"`
	// Latency is the legitimate tunnel's during the attack; P99Ratio its
	// p99 over the same server's unloaded p99 (goal <= 2). Control and
	// ControlP99Ratio are the same for the app asked directly.
	Latency  harness.LatencyStats `json:"latency"`
	Errors   map[string]int       `json:"errors,omitempty"`
	P99Ratio float64              `json:"p99_ratio"`
	// P99BySecond is the p99 of each second of the attack, in ms, and
	// P99AfterRampMs the p99 of all but its first seconds (rampUp).
	P99BySecond     []float64            `json:"p99_by_second_ms"`
	P99AfterRampMs  float64              `json:"p99_after_ramp_ms"`
	Control         harness.LatencyStats `json:"control"`
	ControlP99Ratio float64              `json:"control_p99_ratio"`
	// The server: at rest before the attack, peak during it, and at rest
	// after it (Recovered: goroutines back within 30 of where the server
	// was before any attack).
	RSSBaselineMiB     float64            `json:"rss_baseline_mib"`
	RSSPeakMiB         float64            `json:"rss_peak_mib"`
	RSSAfterMiB        float64            `json:"rss_after_mib"`
	GoroutinesBaseline int                `json:"goroutines_baseline"`
	GoroutinesPeak     int                `json:"goroutines_peak"`
	GoroutinesAfter    int                `json:"goroutines_after"`
	Recovered          bool               `json:"recovered"`
	Gauges             map[string]float64 `json:"gauge_peaks"`
	// MetricScrapeFailures counts /metrics reads that failed or took
	// over a second during the attack.
	MetricScrapeFailures int     `json:"metric_scrape_failures"`
	ServerCPU            float64 `json:"server_cpu_percent"`   // of one core
	AttackerCPU          float64 `json:"attacker_cpu_percent"` // of one core
	// Attacker is what the attacker counted; LimitHits the server's
	// porthole_limit_hits_total increase during the attack, by kind.
	Attacker   attackStats        `json:"attacker"`
	LimitHits  map[string]float64 `json:"limit_hits"`
	CutOff     string             `json:"cut_off"`
	ServerDied bool               `json:"server_died,omitempty"`
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "porthole abuse benchmark, %s; %s; %s phases\n", r.Date, r.Machine, r.Duration)
	fmt.Fprintf(w, "legitimate tunnel: %s\n", r.Load)
	for _, s := range r.Servers {
		fmt.Fprintf(w, "server %q: %s\n  unloaded: %s; %d goroutines, %.0f MiB RSS\n  control (the app directly): %s\n",
			s.Name, s.Command, s.Unloaded, s.Goroutines, s.RSSMiB, s.Control)
		switch {
		case s.Visitors > 0:
			fmt.Fprintf(w, "  legitimate visitors opened %d connections on %d servers (%d when none was dropped); %d late slots skipped\n",
				s.LegitConnections, s.Instances, s.Instances*s.Visitors, s.LateSlots)
		case s.LegitConnections > 0:
			fmt.Fprintf(w, "  legitimate visitors opened %d connections on %d servers; %d late slots skipped\n",
				s.LegitConnections, s.Instances, s.LateSlots)
		}
	}
	fmt.Fprintln(w)
	rows := [][]string{{"attack", "p99 ratio (control)", "errors", "RSS peak MiB (baseline)", "goroutines peak (baseline)", "cut off / by what"}}
	for i, a := range r.Attacks {
		rows = append(rows, []string{
			fmt.Sprintf("%d. %s", i+1, a.Title),
			fmt.Sprintf("%.2f (%.2f)", a.P99Ratio, a.ControlP99Ratio),
			fmt.Sprint(a.Latency.Errors),
			fmt.Sprintf("%.0f (%.0f)", a.RSSPeakMiB, a.RSSBaselineMiB),
			fmt.Sprintf("%d (%d)", a.GoroutinesPeak, a.GoroutinesBaseline),
			cutOffShort(a),
		})
	}
	printTable(w, rows)
	fmt.Fprintln(w)
	for i, a := range r.Attacks {
		fmt.Fprintf(w, "%d. %s [%s; server %q; actor: %s]\n", i+1, a.Title, a.Name, a.Server, a.Actor)
		fmt.Fprintf(w, "   legitimate: %s; p99 x%.2f (control x%.2f: %s)\n", a.Latency, a.P99Ratio, a.ControlP99Ratio, a.Control)
		fmt.Fprintf(w, "   legitimate p99 after the first %s: %.2fms (x%.2f); worst second's p99 %.2fms\n",
			rampUp, a.P99AfterRampMs, a.P99AfterRampMs/r.unloadedP99(a.Server), slices.Max(append([]float64{0}, a.P99BySecond...)))
		if len(a.Errors) > 0 {
			fmt.Fprintf(w, "   legitimate errors: %s\n", formatCounts(a.Errors))
		}
		fmt.Fprintf(w, "   server: RSS %.0f -> peak %.0f -> after %.0f MiB; goroutines %d -> peak %d -> after %d%s; CPU %.0f%% of a core (attacker %.0f%%)\n",
			a.RSSBaselineMiB, a.RSSPeakMiB, a.RSSAfterMiB, a.GoroutinesBaseline, a.GoroutinesPeak, a.GoroutinesAfter,
			map[bool]string{true: "", false: " (not back to rest within 20 s)"}[a.Recovered], a.ServerCPU, a.AttackerCPU)
		fmt.Fprintf(w, "   gauge peaks: %s", formatGauges(a.Gauges))
		if a.MetricScrapeFailures > 0 {
			fmt.Fprintf(w, "; %d /metrics reads failed or took over 1 s", a.MetricScrapeFailures)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "   attacker: %s\n", a.CutOff)
		fmt.Fprintf(w, "   limit hits: %s\n", formatCounts(a.LimitHits))
		fmt.Fprintf(w, "   attacker's counts: %s\n", formatCounts(a.Attacker.Counts))
		if a.Attacker.Err != "" {
			fmt.Fprintf(w, "   attacker error: %s\n", a.Attacker.Err)
		}
		fmt.Fprintf(w, "   bound: %s\n", a.Budget)
	}
}

func (r *result) unloadedP99(server string) float64 {
	for _, s := range r.Servers {
		if s.Name == server {
			return s.Unloaded.P99ms
		}
	}
	return 0
}

// cutOffShort is the table's last column: yes or no, and by what.
func cutOffShort(a *attackResult) string {
	if a.ServerDied {
		return "SERVER DIED"
	}
	var by []string
	for _, k := range sortedKeys(a.LimitHits) {
		by = append(by, fmt.Sprintf("%s +%.0f", k, a.LimitHits[k]))
	}
	c := a.Attacker.Counts
	switch a.Name {
	case "stalled-readers":
		if c["cut"] > 0 {
			return fmt.Sprintf("%d of %d closed; %s", c["cut"], c["stalled"], strings.Join(by, ", "))
		}
		return fmt.Sprintf("no, held (write timeout 60 s)%s", joinBy(by))
	case "huge-headers":
		if c["big_status_200"] > 0 || c["1xx_1xx_passed"] > 0 {
			return fmt.Sprintf("NO: %d x 200 with 30 MB headers, %d endless 1xx passed", c["big_status_200"], c["1xx_1xx_passed"])
		}
		return fmt.Sprintf("yes: 502 x %d", c["big_status_502"]+c["1xx_status_502"])
	case "h2-streams":
		return fmt.Sprintf("%d stalled at most; 429 x %d%s", c["stalled_peak"], c["status_429"], joinBy(by))
	case "basic-auth":
		// A throttled address earns one try a second back: a right
		// password that took it is let in. More than that would be the
		// password checked before the throttle.
		if allowed := int64(a.Attacker.Seconds+1) * int64(len(guessAddrs)); c["right_while_blocked_200"] > allowed {
			return fmt.Sprintf("NO: right password let in %d times while throttled (at most %d tries came back)", c["right_while_blocked_200"], allowed)
		}
		return fmt.Sprintf("yes: 429 x %d, right password while throttled 429 x %d%s",
			c["local_status_429"]+c["spray_status_429"]+c["right_while_blocked_429"], c["right_while_blocked_429"], joinBy(by))
	case "slowloris":
		return fmt.Sprintf("yes: %d closed after %s (read_header_timeout)%s", c["closed"], meanMs(c, "closed"), joinBy(by))
	case "idle-conns":
		return fmt.Sprintf("%d accepted, %d refused%s", c["accepted"], c["refused_503"]+c["refused_429"], joinBy(by))
	case "handshake-flood":
		return fmt.Sprintf("401 x %d, 429 x %d%s", c["status_401"], c["status_429"], joinBy(by))
	case "address-spray":
		return fmt.Sprintf("%d addresses; 429 x %d%s", c["addresses"], c["status_429"], joinBy(by))
	case "ping-flood", "frame-floods":
		var cut, stalled int64
		for k, v := range c {
			if strings.HasSuffix(k, "_cut") {
				cut += v
			}
			if strings.HasSuffix(k, "_stalled") {
				stalled += v
			}
		}
		s := fmt.Sprintf("yes: %d of %d sessions ended%s", cut, c["sessions"], joinBy(by))
		if stalled > 0 {
			s += fmt.Sprintf("; %d stalled", stalled)
		}
		return s
	}
	return strings.Join(by, ", ")
}

func joinBy(by []string) string {
	if len(by) == 0 {
		return ""
	}
	return " (" + strings.Join(by, ", ") + ")"
}

func printTable(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for n, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString(" | ")
			}
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s", width[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
		if n == 0 {
			var sep []string
			for i := range r {
				sep = append(sep, strings.Repeat("-", width[i]))
			}
			fmt.Fprintln(w, strings.Join(sep, "-|-"))
		}
	}
}

func formatCounts[V int | int64 | float64](m map[string]V) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func formatGauges(m map[string]float64) string {
	var parts []string
	for _, k := range watchedGauges {
		v := m[k]
		if k == "porthole_buffered_bytes" {
			parts = append(parts, fmt.Sprintf("%s=%.1f MiB", strings.TrimPrefix(k, "porthole_"), v/(1<<20)))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "porthole_"), v))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// machineNote describes the machine: CPUs, model, memory, load.
func machineNote() string {
	s := fmt.Sprintf("%d CPUs", runtime.NumCPU())
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				s += " (" + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":")) + ")"
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			s += ", load average " + strings.Join(f[:3], " ") + " at the start"
		}
	}
	return s + ", " + runtime.Version()
}
