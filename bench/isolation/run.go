package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/porthole/porthole/bench/internal/harness"
	"github.com/porthole/porthole/bench/internal/procs"
)

func run(ctx context.Context, dir string, o options) (*result, error) {
	cfg := fmt.Sprintf("[limits]\nrequests_per_second = %g\nburst = %d\nbandwidth_bytes_per_second = %d\nmax_tunnels_per_user = 10\n",
		o.rps, o.burst, o.bandwidth)
	srv, err := harness.StartServer(dir, o.bin, harness.ServerOptions{Domain: "iso.test", Config: cfg})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()

	// Three users, each with a key.
	keys := map[string]string{}
	for _, u := range []string{"flooded", "hog", "victim"} {
		if _, err := srv.AdminCmd("users", "add", u); err != nil {
			return nil, err
		}
		k, err := srv.AdminCmd("keys", "create", "--user", u)
		if err != nil {
			return nil, err
		}
		keys[u] = k
	}

	// The apps: the measured tunnel's here; the flooded tunnel's and the
	// bandwidth user's in a process of their own, so that serving the
	// abuse does not share this process with the measurement.
	victimPort, stopVictim, err := harness.StartApp(smallApp())
	if err != nil {
		return nil, err
	}
	defer stopVictim()
	apps, err := harness.StartProc(dir, "apps", selfExe(), "-role", "apps")
	if err != nil {
		return nil, err
	}
	defer apps.Stop()
	m, err := apps.WaitFor(apps.Stdout, regexp.MustCompile(`ports (\d+) (\d+)`), 10*time.Second)
	if err != nil {
		return nil, err
	}
	ports := map[string]int{"victim": victimPort}
	ports["flooded"], _ = strconv.Atoi(m[1])
	ports["hog"], _ = strconv.Atoi(m[2])
	hosts := map[string]string{}
	// CPU time by process, to see who competes for the CPUs.
	cpu := map[string]func() float64{"server": cpuSeconds(srv.Proc), "apps (flooded, hog)": cpuSeconds(apps), "this (measuring)": selfCPUSeconds}
	for _, user := range []string{"flooded", "hog", "victim"} {
		c, host, err := harness.StartClient(dir, user, srv, strconv.Itoa(ports[user]), keys[user])
		if err != nil {
			return nil, err
		}
		defer c.Stop()
		hosts[user] = host
		cpu["client "+user] = cpuSeconds(c)
	}
	log.Printf("server %s; tunnels %v", srv.HTTP, hosts)

	res := &result{}
	res.Config.RequestsPerSecond, res.Config.Burst, res.Config.BandwidthBytes = o.rps, o.burst, o.bandwidth
	res.Config.FloodRate, res.Config.VictimRate = o.rps*o.floodFactor, o.victimRate
	res.Config.Rounds, res.Config.Phase, res.Config.CPUs = o.rounds, o.phase.String(), runtime.NumCPU()

	victim := harness.Visitor(srv.HTTP, 64)
	victimURL := "http://" + hosts["victim"] + "/"
	// The control: the same app at the same rate, not through porthole.
	// It shows how much of the latency is the machine's, not the tunnel's.
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	directURL := fmt.Sprintf("http://127.0.0.1:%d/", ports["victim"])
	phase := func() (tun, ctl []time.Duration, errs int) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctl, _ = measure(ctx, direct, directURL, o.victimRate, o.phase)
		}()
		tun, errs = measure(ctx, victim, victimURL, o.victimRate, o.phase)
		wg.Wait()
		return tun, ctl, errs
	}
	// Warm up: connections, streams, the app's keep-alive pool.
	measure(ctx, victim, victimURL, o.victimRate, 3*time.Second)

	var unloaded, loaded, directUnloaded, directLoaded []time.Duration
	var errUnloaded, errLoaded int
	var timeUnloaded, timeLoaded float64
	cpuUnloaded, cpuLoaded := map[string]float64{}, map[string]float64{}
	snap := func() map[string]float64 {
		m := map[string]float64{}
		for k, f := range cpu {
			m[k] = f()
		}
		return m
	}
	addCPU := func(into, before map[string]float64) {
		for k, f := range cpu {
			into[k] += f() - before[k]
		}
	}
	var abuse abuseStats
	for r := range o.rounds {
		c0, t0 := snap(), time.Now()
		d, dd, e := phase()
		addCPU(cpuUnloaded, c0)
		timeUnloaded += time.Since(t0).Seconds()
		unloaded, errUnloaded = append(unloaded, d...), errUnloaded+e
		directUnloaded = append(directUnloaded, dd...)
		log.Printf("round %d unloaded: %s; direct p99=%.2fms", r+1, harness.Summarise(d, e), harness.Summarise(dd, 0).P99ms)

		// The abuse comes from a process of its own, so that it competes
		// with the measured requests only for the server and the CPUs,
		// as abusive visitors elsewhere would.
		ab, err := startAbuse(dir, r, srv.HTTP, "http://"+hosts["flooded"]+"/", "http://"+hosts["hog"]+"/", o.rps*o.floodFactor)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second) // let the abuse reach its pace
		c0, t0 = snap(), time.Now()
		ab0 := cpuSeconds(ab.p)()
		d, dd, e = phase()
		addCPU(cpuLoaded, c0)
		cpuLoaded["abuse (flood, hog)"] += cpuSeconds(ab.p)() - ab0
		timeLoaded += time.Since(t0).Seconds()
		st, err := ab.finish()
		if err != nil {
			return nil, err
		}
		abuse.add(st)
		loaded, errLoaded = append(loaded, d...), errLoaded+e
		directLoaded = append(directLoaded, dd...)
		if u := harness.Summarise(unloaded[len(unloaded)-len(d):], 0).P99ms; u > 0 {
			res.RoundRatios = append(res.RoundRatios, harness.Summarise(d, 0).P99ms/u)
		}
		log.Printf("round %d loaded:   %s; direct p99=%.2fms", r+1, harness.Summarise(d, e), harness.Summarise(dd, 0).P99ms)
		time.Sleep(time.Second) // let the abuse drain
	}
	res.Unloaded, res.Loaded = harness.Summarise(unloaded, errUnloaded), harness.Summarise(loaded, errLoaded)
	res.DirectUnloaded, res.DirectLoaded = harness.Summarise(directUnloaded, 0), harness.Summarise(directLoaded, 0)
	if res.DirectUnloaded.P99ms > 0 {
		res.DirectP99Ratio = res.DirectLoaded.P99ms / res.DirectUnloaded.P99ms
	}
	if len(res.RoundRatios) > 0 {
		r := slices.Clone(res.RoundRatios)
		slices.Sort(r)
		res.MedianRoundRatio = r[len(r)/2]
	}
	if res.Unloaded.P99ms > 0 {
		res.P99Ratio = res.Loaded.P99ms / res.Unloaded.P99ms
	}
	res.FloodSent, res.Flood200, res.Flood429, res.FloodOther = abuse.Sent, abuse.OK, abuse.Limited, abuse.Other
	res.FloodAchieved = float64(abuse.Sent) / abuse.Seconds
	res.HogDownMiBps = float64(abuse.Down) / abuse.Seconds / (1 << 20)
	res.HogUpMiBps = float64(abuse.Up) / abuse.Seconds / (1 << 20)
	res.CPUUnloaded, res.CPULoaded = map[string]float64{}, map[string]float64{}
	for k, v := range cpuUnloaded {
		res.CPUUnloaded[k] = 100 * v / timeUnloaded
	}
	for k, v := range cpuLoaded {
		res.CPULoaded[k] = 100 * v / timeLoaded
	}
	res.LimitHits = srv.LimitHits()
	return res, nil
}

func smallApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
}

// bulkApp sends ?size= bytes, or takes an upload of any size.
func bulkApp() http.Handler {
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(rand.Uint32())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n := harness.Drain(r.Body)
			io.WriteString(w, strconv.FormatInt(n, 10))
			return
		}
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for size > 0 {
			n := min(size, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			size -= n
		}
	})
}

// runApps is the apps process: the flooded tunnel's app and the bandwidth
// user's, until interrupted.
func runApps() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	small, stopSmall, err := harness.StartApp(smallApp())
	if err != nil {
		log.Fatal(err)
	}
	defer stopSmall()
	bulk, stopBulk, err := harness.StartApp(bulkApp())
	if err != nil {
		log.Fatal(err)
	}
	defer stopBulk()
	fmt.Printf("ports %d %d\n", small, bulk)
	<-ctx.Done()
}

// selfCPUSeconds is this process's CPU time so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func selfExe() string {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	return self
}

// measure sends requests to url at rate per second for d, open loop (each
// at its scheduled time, whether or not earlier ones have finished), and
// returns the latencies counted from the scheduled time, so that a stall
// shows in every request it delays.
func measure(ctx context.Context, c *http.Client, url string, rate float64, d time.Duration) ([]time.Duration, int) {
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err == nil {
				harness.Drain(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			lat[i] = time.Since(at)
			if err != nil {
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	return lat, int(errs.Load())
}

// abuseStats is what an abuse process reports when it stops.
type abuseStats struct {
	Sent, OK, Limited, Other int64
	Down, Up                 int64 // bandwidth user's bytes each way
	Seconds                  float64
}

func (a *abuseStats) add(b abuseStats) {
	a.Sent += b.Sent
	a.OK += b.OK
	a.Limited += b.Limited
	a.Other += b.Other
	a.Down += b.Down
	a.Up += b.Up
	a.Seconds += b.Seconds
}

// runAbuse is the abuse process: it floods one tunnel and saturates the
// other's bandwidth until interrupted, then prints its counts as JSON.
func runAbuse(addr, floodURL, hogURL string, rate float64) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var fl floodStats
	var down, up atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		flood(ctx, addr, floodURL, rate, &fl)
	}()
	go func() {
		defer wg.Done()
		hog(ctx, addr, hogURL, &down, &up)
	}()
	<-ctx.Done()
	secs := time.Since(start).Seconds()
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(abuseStats{Sent: fl.sent.Load(), OK: fl.ok.Load(), Limited: fl.limited.Load(),
		Other: fl.other.Load(), Down: down.Load(), Up: up.Load(), Seconds: secs})
}

// abuser is a running abuse process.
type abuser struct{ p *procs.Proc }

func startAbuse(dir string, round int, addr, floodURL, hogURL string, rate float64) (*abuser, error) {
	p, err := harness.StartProc(dir, fmt.Sprintf("abuse-%d", round+1), selfExe(), "-role", "abuse", "-addr", addr,
		"-flood-url", floodURL, "-hog-url", hogURL, "-flood-rate", strconv.FormatFloat(rate, 'f', -1, 64))
	if err != nil {
		return nil, err
	}
	return &abuser{p: p}, nil
}

// finish stops the abuse and returns its counts.
func (a *abuser) finish() (abuseStats, error) {
	a.p.Stop()
	var st abuseStats
	if err := json.Unmarshal([]byte(a.p.Stdout()), &st); err != nil {
		return st, fmt.Errorf("abuse process: %v (output %q; see %s)", err, a.p.Stdout(), a.p.LogPath)
	}
	return st, nil
}

type floodStats struct {
	sent, ok, limited, other atomic.Int64
}

// flood sends requests to url at rate per second from a pool of workers,
// until ctx ends. Requests the workers cannot keep up with are skipped
// (and show as an achieved rate below the target).
func flood(ctx context.Context, addr, url string, rate float64, st *floodStats) {
	const workers = 64
	c := harness.Visitor(addr, workers)
	defer c.CloseIdleConnections()
	tokens := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						st.other.Add(1)
					}
					continue
				}
				harness.Drain(resp.Body)
				resp.Body.Close()
				st.sent.Add(1)
				switch resp.StatusCode {
				case 200:
					st.ok.Add(1)
				case 429:
					st.limited.Add(1)
				default:
					st.other.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	issued := 0
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds() * rate)
		for ; issued < due; issued++ {
			select {
			case tokens <- struct{}{}:
			default: // workers busy: skip
			}
		}
	}
	close(tokens)
	wg.Wait()
}

// hog downloads and uploads through url without pause until ctx ends,
// counting the bytes each way.
func hog(ctx context.Context, addr, url string, down, up *atomic.Int64) {
	c := harness.Visitor(addr, 4)
	c.Timeout = 0
	defer c.CloseIdleConnections()
	const size = 64 << 20
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"?size="+strconv.Itoa(size), nil)
			resp, err := c.Do(req)
			if err != nil {
				continue
			}
			io.Copy(countWriter{down}, resp.Body)
			resp.Body.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, size)
		for ctx.Err() == nil {
			body := &countReader{r: bytes.NewReader(buf), n: up}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
			req.ContentLength = size
			resp, err := c.Do(req)
			if err != nil {
				continue
			}
			harness.Drain(resp.Body)
			resp.Body.Close()
		}
	}()
	wg.Wait()
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// countReader counts bytes as the transport takes them.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
