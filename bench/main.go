// Command bench measures porthole against the same local app reached
// directly, in one run, and prints the ratio tunnel/direct for each figure:
//
//   - requests/s and p50/p99 latency of a small response at many
//     connections and at one connection;
//   - MB/s of one large download and one large upload, streamed;
//   - p50/p99 round trip of a small WebSocket echo (phase ws);
//   - requests/s with server and client at GOMAXPROCS=2 against
//     GOMAXPROCS=1, in the same run (phase procs);
//   - CPU seconds per request in server plus client, from /proc;
//   - RSS of server and client, idle and under load;
//   - server RSS per idle tunnel (many tunnels in one client) and per idle
//     client session (many sessions against one server), and the server's
//     total RSS with those sessions.
//
// The server and client are the real porthole binary, each its own
// process; the local app is this program re-run as a child process, and the
// load generator runs in this process. Everything listens on 127.0.0.1.
//
//	go run ./bench                 # full run (see docs/benchmarks.md)
//	go run ./bench -quick          # smoke run, a few seconds per figure
//	go run ./bench -window-exp     # stream window experiment
//	go run ./bench -profile DIR    # same run with CPU profiles of server and client
//
// It is a program, not a test: timings on a shared machine are figures to
// read, not assertions.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

// options are the command-line flags.
type options struct {
	porthole   string
	compare    string
	compareEnv string
	compareLog string
	duration   time.Duration
	warmup     time.Duration
	conns      int
	size       int
	wsSize     int
	transfer   byteSize
	tunnels    int
	sessions   int
	settle     time.Duration
	rounds     int
	phases     string
	gomaxprocs int
	logLevel   string
	profile    string
	quick      bool
	keep       bool

	windowExp bool
	windows   string
	rtts      string

	// role, when set, makes this process one of the run's helpers.
	role       string
	listen     string
	serverURL  string
	appAddr    string
	prefix     string
	count      int
	window     int
	memRate    int
	pprofAddr  string
	dataDir    string
	httpAddr   string
	tunnelAddr string
	adminAddr  string
}

func main() {
	var o options
	o.transfer = 1 << 30
	flag.StringVar(&o.porthole, "porthole", "", "porthole binary to measure (default: build ./cmd/porthole into a temporary directory)")
	flag.StringVar(&o.compare, "compare", "", "a second porthole binary (e.g. with a proposed patch) measured in the same run as -porthole, alternating, for the requests/s and transfer phases")
	flag.StringVar(&o.compareEnv, "compare-env", "", "environment of the -compare processes, e.g. GOMAXPROCS=1,GOGC=200 (with -compare the same binary may be given twice)")
	flag.StringVar(&o.compareLog, "compare-log-level", "", "log level of the -compare processes (default: -log-level)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each requests/s phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before each requests/s phase")
	flag.IntVar(&o.conns, "conns", 64, "connections of the concurrent requests/s phase (the other phase uses 1)")
	flag.IntVar(&o.size, "size", 1024, "response size in bytes of the requests/s phases")
	flag.IntVar(&o.wsSize, "ws-size", 64, "message size in bytes of the WebSocket echo phase (ws)")
	flag.Var(&o.transfer, "transfer", "size of the download and of the upload (e.g. 1GiB, 256MiB)")
	flag.IntVar(&o.tunnels, "tunnels", 1000, "idle tunnels in one client, for server RSS per tunnel")
	flag.IntVar(&o.sessions, "sessions", 1000, "idle client sessions, for server RSS per session")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "wait before reading idle RSS")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each requests/s, WebSocket and transfer phase, each direct then tunnel; samples are merged")
	flag.StringVar(&o.phases, "phases", "rps,transfer,tunnels,sessions", "phases to run, comma-separated, of rps, ws (WebSocket echo), transfer, procs (GOMAXPROCS 2 vs 1), tunnels, sessions")
	flag.IntVar(&o.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of every process of the run (0: Go's default, the number of CPUs)")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level of the porthole processes (info logs one line per request, as deployed)")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles of server and client per phase, and heap profiles of the idle phases, into this directory; server and client then run as this program linked with the porthole packages, with a profiling endpoint")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: short phases, 64 MiB transfers, 100 tunnels and sessions (explicit flags still win)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, configs)")
	flag.BoolVar(&o.windowExp, "window-exp", false, "instead of the main run, measure single-stream throughput per multiplexer stream window")
	flag.StringVar(&o.windows, "windows", "256KiB,1MiB,4MiB,16MiB", "stream windows for -window-exp")
	flag.StringVar(&o.rtts, "rtts", "0,10ms,40ms", "added round-trip times for -window-exp (a delaying relay between client and server)")

	flag.StringVar(&o.role, "role", "", "internal: run as a helper process (app, server, client, sessions)")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "internal: address of the app role")
	flag.StringVar(&o.serverURL, "server", "", "internal: tunnel listener URL for client roles")
	flag.StringVar(&o.appAddr, "app", "", "internal: local app address for client roles")
	flag.StringVar(&o.prefix, "prefix", "bench", "internal: subdomain prefix for client roles")
	flag.IntVar(&o.count, "count", 1, "internal: tunnels (client role) or sessions (sessions role)")
	flag.IntVar(&o.window, "window", 0, "internal: server stream window in bytes (server role)")
	flag.IntVar(&o.memRate, "mem-profile-rate", 0, "internal: runtime.MemProfileRate of the server role (0: Go's default)")
	flag.StringVar(&o.pprofAddr, "pprof-addr", "127.0.0.1:0", "internal: profiling endpoint of server and client roles")
	flag.StringVar(&o.dataDir, "data-dir", "", "internal: server role data directory")
	flag.StringVar(&o.httpAddr, "http-addr", "", "internal: server role public listener")
	flag.StringVar(&o.tunnelAddr, "tunnel-addr", "", "internal: server role tunnel listener")
	flag.StringVar(&o.adminAddr, "admin-addr", "", "internal: server role admin listener")
	flag.Parse()

	if o.role != "" {
		if err := runRole(&o); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", o.role, err)
			os.Exit(1)
		}
		return
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("duration", func() { o.duration = 2 * time.Second })
		def("warmup", func() { o.warmup = 500 * time.Millisecond })
		def("transfer", func() { o.transfer = 64 << 20 })
		def("tunnels", func() { o.tunnels = 100 })
		def("sessions", func() { o.sessions = 100 })
		def("settle", func() { o.settle = time.Second })
		def("rounds", func() { o.rounds = 1 })
	}
	if o.compare != "" && o.profile != "" {
		fmt.Fprintln(os.Stderr, "bench: -compare and -profile do not go together")
		os.Exit(2)
	}
	if o.has("procs") && o.profile != "" {
		// Profiled servers and clients take the run's environment only.
		fmt.Fprintln(os.Stderr, "bench: -phases procs and -profile do not go together")
		os.Exit(2)
	}
	if o.wsSize <= 0 || o.wsSize > maxEchoSize {
		fmt.Fprintf(os.Stderr, "bench: -ws-size %d: want 1 to %d bytes\n", o.wsSize, maxEchoSize)
		os.Exit(2)
	}
	for _, p := range strings.Split(o.phases, ",") {
		switch strings.TrimSpace(p) {
		case "rps", "ws", "transfer", "procs", "tunnels", "sessions":
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q in -phases\n", p)
			os.Exit(2)
		}
	}
	raiseFileLimit()
	if o.gomaxprocs > 0 {
		runtime.GOMAXPROCS(o.gomaxprocs)
	}
	var err error
	if o.windowExp {
		err = runWindowExperiment(&o)
	} else {
		err = runBench(&o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft open-file limit to the hard one, for
// this process and the children it starts (the server holds one socket
// per session, the sessions helper one per session too).
func raiseFileLimit() {
	if _, err := procs.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}

func (o *options) has(phase string) bool {
	for _, p := range strings.Split(o.phases, ",") {
		if strings.TrimSpace(p) == phase {
			return true
		}
	}
	return false
}

// byteSize is a flag value like 1GiB, 64MiB, 512KiB or 1000.
type byteSize int64

func (b *byteSize) String() string { return formatBytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s = strings.TrimSuffix(s, u.suffix)
			mult = u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB, MiB or GiB suffix", s)
	}
	return n * mult, nil
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
