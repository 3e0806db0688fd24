// Command abuse is porthole's abuse benchmark: it attacks a real server
// on loopback the ways a server on the open internet gets attacked, one
// attack at a time, while a legitimate tunnel serves a steady load, and reports
// for each attack what it did to the legitimate tunnel's latency and
// errors, the server's peak memory and goroutines, and whether the
// attacker was cut off and by which limit.
//
// The server is the porthole binary (built from this module), a fresh
// one for each attack (and one for each unloaded measurement), so that
// what an attack leaves behind does not move the next one's baseline. It
// runs as `porthole server --no-auth` on its defaults, with no config
// file, for the attacks by visitors, clients and local apps; the same
// with a self-signed certificate, an HTTPS listener and wss:// clients
// for the HTTP/2 stream flood; and with API keys (and
// visitor_requests_per_second_per_ip set, so the per-address table keeps
// every address it sees) for the handshake flood with bad credentials
// and the spray of source addresses. Each attacker is a process of its
// own; the attackers' local apps run in another. Attackers bind source
// addresses in 127.0.0.0/8 to play many visitors.
//
//	go run ./bench/abuse                         # about 9 minutes: 30 s a phase
//	go run ./bench/abuse -quick                  # 5 s phases, about 3 minutes
//	go run ./bench/abuse -attacks ping-flood,slowloris -duration 10s -json
//	go run ./bench/abuse -report abuse.json     # the table of an earlier -json run
//
// It is a program, not a test: the figures depend on the machine and on
// what else runs on it, and are there to be read.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/porthole/porthole/bench/internal/procs"
)

type options struct {
	bin           string
	duration      time.Duration
	quick         bool
	attacks       string
	jsonOut       bool
	keep          bool
	loadConns     int
	loadInterval  time.Duration
	sprayAddrs    int
	handshakeRate float64
}

func main() {
	var o options
	flag.StringVar(&o.bin, "porthole", "", "porthole binary to run (default: build it from this module)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of each phase: the unloaded measurement and each attack")
	flag.BoolVar(&o.quick, "quick", false, "5 s phases (overrides -duration)")
	flag.StringVar(&o.attacks, "attacks", "", "comma-separated attacks to run (default all: "+strings.Join(attackNames(), ",")+")")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of the table")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, databases)")
	flag.IntVar(&o.loadConns, "load-conns", 8, "legitimate visitors, one keep-alive connection each")
	flag.DurationVar(&o.loadInterval, "load-interval", 25*time.Millisecond, "each legitimate visitor's time between requests")
	flag.IntVar(&o.sprayAddrs, "spray-addrs", 120_000, "distinct source addresses of the address spray")
	flag.Float64Var(&o.handshakeRate, "handshake-rate", 1000, "bad-credential handshakes a second")
	report := flag.String("report", "", "print the table of an earlier run's -json output `FILE` and exit")
	// The helper processes, started by the run itself.
	role := flag.String("role", "", "")
	attackParams := flag.String("params", "", "")
	flag.Parse()
	switch *role {
	case "apps":
		runApps()
		return
	case "attacker":
		runAttacker(*attackParams)
		return
	}
	log.SetFlags(log.Ltime)
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			log.Fatal(err)
		}
		var res result
		if err := json.Unmarshal(b, &res); err != nil {
			log.Fatalf("%s: %v", *report, err)
		}
		res.print(os.Stdout)
		return
	}
	if o.quick {
		o.duration = 5 * time.Second
	}
	if _, err := selectAttacks(o.attacks); err != nil {
		log.Fatal(err)
	}
	// The idle-connections attack holds 10,000 sockets in the attacker and
	// as many in the server: lift the open-file limit, for this process
	// and its children.
	if n, err := procs.RaiseFileLimit(); err != nil {
		log.Print(err)
	} else if n < 12_000 {
		log.Printf("open-file limit %d: the idle-connections attack may be cut short by it", n)
	}

	dir, err := os.MkdirTemp("", "porthole-abuse-")
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
		log.Printf("building porthole")
		if err := procs.BuildPorthole(o.bin); err != nil {
			log.Fatalf("go build: %v", err)
		}
	}
	res, err := run(context.Background(), dir, &o)
	if err != nil {
		log.Print(err)
		if res == nil {
			os.Exit(1)
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		res.print(os.Stdout)
	}
	if err != nil {
		os.Exit(1)
	}
}

func selfExe() string {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	return self
}

func attackNames() []string {
	var n []string
	for _, a := range attacks {
		n = append(n, a.name)
	}
	return n
}

// selectAttacks returns the attacks named in list, in the run's order.
func selectAttacks(list string) ([]*attack, error) {
	if list == "" {
		return attacks, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []*attack
	for _, a := range attacks {
		if want[a.name] {
			out = append(out, a)
			delete(want, a.name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("no attack %q; the attacks are %s", n, strings.Join(attackNames(), ", "))
	}
	return out, nil
}
