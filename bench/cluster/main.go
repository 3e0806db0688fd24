// Command cluster measures a three-node porthole cluster on one
// PostgreSQL database, on loopback, and prints one report:
//
//   - forward: requests/s and p50/p99 latency of 1 KiB responses at 64
//     keep-alive connections and at 1, a visitor at the node that holds
//     the client's session (local) against a visitor at another node
//     (forwarded over the cluster link), in alternating rounds, as
//     forwarded/local ratios;
//   - failover: a client with two --server nodes, connected to the first;
//     SIGKILL of that node; the time until a visitor at the third node
//     gets 200 again, from the kill and from the client's reconnect;
//   - bind: a new name bound at node1, and the time until node2 and node3
//     answer it too;
//   - tunnels: 10,000 tunnels held by a few clients spread over the three
//     nodes; each node's RSS before and after, per tunnel, and a sample of
//     names at every node.
//
// Every node is the real porthole binary, its own process, node i on
// 127.0.0.(11+i); each phase has its own cluster on a PostgreSQL schema of
// its own, created for the run and dropped at its end. The origin app and
// the load generator run in this process.
//
//	go run ./bench/cluster                      # full run (see docs/benchmarks.md, "Cluster")
//	go run ./bench/cluster -quick               # smoke run
//	go run ./bench/cluster -phases forward,bind # some phases only
//
// It is a program, not a test: timings on a shared machine are figures to
// read, not assertions.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

// defaultDatabase is the PostgreSQL the project's tests use; the
// environment variable PORTHOLE_TEST_POSTGRES overrides it.
const defaultDatabase = "postgres://porthole:porthole@127.0.0.1:5432/porthole_test?sslmode=disable"

var allPhases = []string{"forward", "failover", "bind", "tunnels"}

// options are the command-line flags.
type options struct {
	porthole  string
	database  string
	phases    string
	duration  time.Duration
	warmup    time.Duration
	rounds    int
	conns     int
	size      int
	failovers int
	failPoll  time.Duration
	binds     int
	bindPoll  time.Duration
	tunnels   int
	clients   int
	sample    int
	settle    time.Duration
	logLevel  string
	keep      bool
	quick     bool
}

func (o *options) has(phase string) bool {
	return slices.Contains(strings.Split(o.phases, ","), phase)
}

func parseFlags() *options {
	o := &options{}
	db := os.Getenv("PORTHOLE_TEST_POSTGRES")
	if db == "" {
		db = defaultDatabase
	}
	flag.StringVar(&o.porthole, "porthole", "", "porthole binary to measure (default: build ./cmd/porthole into a temporary directory)")
	flag.StringVar(&o.database, "database", db, "PostgreSQL URL; each cluster gets a schema of its own there (default: $PORTHOLE_TEST_POSTGRES, else the tests' database)")
	flag.StringVar(&o.phases, "phases", strings.Join(allPhases, ","), "phases to run, comma-separated: "+strings.Join(allPhases, ", "))
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "forward: measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "forward: warm-up before each run")
	flag.IntVar(&o.rounds, "rounds", 3, "forward: rounds, each a local and a forwarded run (the order alternates)")
	flag.IntVar(&o.conns, "conns", 64, "forward: keep-alive connections of the many-connection runs (the other runs use 1)")
	flag.IntVar(&o.size, "size", 1024, "forward: response bytes")
	flag.IntVar(&o.failovers, "failovers", 5, "failover: repetitions, each on a fresh cluster")
	flag.DurationVar(&o.failPoll, "failover-poll", 20*time.Millisecond, "failover: visitor poll interval at node3")
	flag.IntVar(&o.binds, "binds", 100, "bind: names bound, one client process each")
	flag.DurationVar(&o.bindPoll, "bind-poll", 5*time.Millisecond, "bind: visitor poll interval at each node")
	flag.IntVar(&o.tunnels, "tunnels", 10000, "tunnels: tunnels over the three nodes")
	flag.IntVar(&o.clients, "tunnel-clients", 6, "tunnels: client processes holding them, spread round-robin over the nodes")
	flag.IntVar(&o.sample, "sample", 100, "tunnels: names requested at every node afterwards")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "tunnels: wait before each RSS reading")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level of the servers (clients log at info, as deployed: the failover phase reads their \"connected\" lines)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (logs, configs)")
	flag.BoolVar(&o.quick, "quick", false, "smoke run: 2 s runs, 1 round, 2 failovers, 20 binds, 1,000 tunnels")
	flag.Parse()
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("duration", func() { o.duration = 2 * time.Second })
		def("warmup", func() { o.warmup = time.Second })
		def("rounds", func() { o.rounds = 1 })
		def("failovers", func() { o.failovers = 2 })
		def("binds", func() { o.binds = 20 })
		def("tunnels", func() { o.tunnels = 1000 })
		def("settle", func() { o.settle = 2 * time.Second })
	}
	return o
}

// runner holds what the phases share.
type runner struct {
	o     *options
	dir   string
	bin   string
	built string
	db    *database
	app   string // the origin app's port
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func main() {
	o := parseFlags()
	for _, p := range strings.Split(o.phases, ",") {
		if !slices.Contains(allPhases, p) {
			fmt.Fprintf(os.Stderr, "-phases: unknown phase %q (have %s)\n", p, strings.Join(allPhases, ", "))
			os.Exit(2)
		}
	}
	rep := &report{
		cmdline: strings.Join(append([]string{"go run ./bench/cluster"}, os.Args[1:]...), " "),
		started: time.Now(),
		cpus:    runtime.NumCPU(),
		model:   cpuModel(),
		load:    loadAverage(),
		o:       o,
	}
	r, err := newRunner(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rep.built = r.built
	// An interrupted run still drops its schemas; its children die with it.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		logf("interrupted: dropping the schemas")
		r.close()
		os.Exit(1)
	}()
	failed := run(r, rep)
	rep.ended = time.Now()
	rep.loadEnd = loadAverage()
	r.close()
	rep.print(os.Stdout)
	if failed {
		os.Exit(1)
	}
}

func newRunner(o *options) (*runner, error) {
	dir, err := os.MkdirTemp("", "porthole-bench-cluster-")
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, dir: dir, bin: o.porthole}
	if r.bin == "" {
		r.bin = filepath.Join(dir, "porthole")
		logf("building ./cmd/porthole ...")
		if err := procs.BuildPorthole(r.bin); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("build porthole (run from inside the repository, or pass -porthole): %w", err)
		}
		if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			r.built = "built from commit " + strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
				r.built += " plus uncommitted changes"
			}
		}
	}
	if out, err := exec.Command(r.bin, "version").Output(); err == nil {
		r.built = strings.Trim(strings.TrimSpace(string(out))+", "+r.built, ", ")
	}
	if _, err := procs.RaiseFileLimit(); err != nil {
		logf("%v", err)
	}
	if r.db, err = openDatabase(o.database); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, _, err := startApp(o.size)
	if err != nil {
		r.close()
		return nil, err
	}
	r.app = port
	return r, nil
}

func (r *runner) close() {
	if r.db != nil {
		r.db.close()
		r.db = nil
	}
	if r.o.keep {
		logf("kept %s", r.dir)
		return
	}
	os.RemoveAll(r.dir)
}

// run runs the phases asked for, in their order; a phase that fails is
// reported and the next one runs.
func run(r *runner, rep *report) (failed bool) {
	for _, p := range allPhases {
		if !r.o.has(p) {
			continue
		}
		logf("phase %s", p)
		var err error
		switch p {
		case "forward":
			rep.forward, err = runForward(r)
		case "failover":
			rep.failover, err = runFailover(r)
		case "bind":
			rep.bind, err = runBind(r)
		case "tunnels":
			rep.tunnels, err = runTunnels(r)
		}
		if err != nil {
			logf("phase %s failed: %v", p, err)
			rep.errors = append(rep.errors, fmt.Sprintf("%s: %v", p, firstLine(err.Error())))
			failed = true
		}
	}
	return failed
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// startClient starts `porthole ARGS` as a client, its session and tunnel
// lines kept. Clients log at info whatever -log-level says: the failover
// phase reads which server each session went to from their "connected"
// lines.
func (r *runner) startClient(name string, args ...string) (*proc, error) {
	return startProc(r.dir, name, keepClientLines, r.bin, append(args, "--log-level", "info")...)
}

func isForwarding(l string) bool { return strings.HasPrefix(l, "Forwarding") }
