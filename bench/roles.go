package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	rpprof "runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/logging"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/version"
)

// runRole runs this process as one of the run's helpers, until SIGTERM.
func runRole(o *options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch o.role {
	case "app":
		return runApp(ctx, o)
	case "server":
		return runServerRole(ctx, o)
	case "client":
		return runClientRole(ctx, o)
	case "sessions":
		return runSessionsRole(ctx, o)
	}
	return fmt.Errorf("unknown role %q", o.role)
}

// runApp is the local app: GET /bytes?n=N answers N bytes, POST /upload
// reads the body and answers how many bytes it read, GET /ws is a
// WebSocket that sends every message back as it came.
func runApp(ctx context.Context, o *options) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			b := pattern
			if int64(len(b)) > n {
				b = b[:n]
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			n -= int64(len(b))
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		n, err := io.CopyBuffer(io.Discard, onlyReader{r.Body}, buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, strconv.FormatInt(n, 10))
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		// The tunnel's visitor comes with the tunnel's Host and no Origin;
		// the check would refuse nothing here.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("listening %s\n", ln.Addr())
	<-ctx.Done()
	return srv.Close()
}

// roleLogger is the porthole binary's process logger (buffered, flushed
// within logging.FlushInterval), so that a profiled server or client
// spends on its log lines what the binary spends; the returned function
// flushes it.
func roleLogger(o *options) (*slog.Logger, func()) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	log, closeLog, err := logging.New(os.Stderr, "text", level)
	if err != nil {
		panic(err) // "text" is a valid format
	}
	return log, closeLog
}

// runServerRole is `porthole server --no-auth` built from the same
// packages, plus a profiling endpoint.
func runServerRole(ctx context.Context, o *options) error {
	if o.memRate > 0 {
		runtime.MemProfileRate = o.memRate
	}
	if err := serveProfiling(o.pprofAddr); err != nil {
		return err
	}
	cfg := server.DefaultConfig()
	cfg.NoAuth = true
	cfg.Domain = "localhost"
	cfg.HTTPAddr = o.httpAddr
	cfg.TunnelAddr = o.tunnelAddr
	cfg.AdminAddr = o.adminAddr
	cfg.DataDir = o.dataDir
	cfg.Tunnel.StreamWindow = o.window
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, closeLog := roleLogger(o)
	defer closeLog()
	srv, err := server.New(cfg, server.Deps{Logger: log, Version: version.String()})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// runClientRole is `porthole http` (count 1) or `porthole start` (count
// tunnels) built from the same packages, plus a profiling endpoint.
func runClientRole(ctx context.Context, o *options) error {
	if err := serveProfiling(o.pprofAddr); err != nil {
		return err
	}
	log, closeLog := roleLogger(o)
	defer closeLog()
	c, err := newClient(o, o.prefix, o.count, log, func(e client.Event) {
		if e.Kind == client.EventForwarding {
			fmt.Printf("Forwarding %s -> %s\n", e.Tunnel.URL, e.Tunnel.Target)
		}
	})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

func newClient(o *options, prefix string, tunnels int, log *slog.Logger, onEvent func(client.Event)) (*client.Client, error) {
	cfg := client.DefaultConfig()
	cfg.Servers = []string{o.serverURL}
	cfg.InspectAddr = ""
	var specs []client.Spec
	for i := 0; i < tunnels; i++ {
		name := prefix
		if tunnels > 1 {
			name = fmt.Sprintf("%s%04d", prefix, i)
		}
		specs = append(specs, client.Spec{Name: name, Config: client.TunnelConfig{Proto: "http", Addr: o.appAddr, Subdomain: name}})
	}
	return client.New(cfg, specs, client.Deps{Logger: log, Version: version.String(), OnEvent: onEvent})
}

// runSessionsRole opens count client sessions, one tunnel each, connecting
// them a batch at a time, prints "ready" when all are forwarding and stays
// idle until stopped.
func runSessionsRole(ctx context.Context, o *options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	const batch = 50
	var wg sync.WaitGroup
	errc := make(chan error, o.count)
	for i := 0; i < o.count; i += batch {
		n := min(batch, o.count-i)
		var up sync.WaitGroup
		up.Add(n)
		for j := i; j < i+n; j++ {
			var once sync.Once
			c, err := newClient(o, fmt.Sprintf("%s%04d", o.prefix, j), 1, log, func(e client.Event) {
				if e.Kind == client.EventForwarding {
					once.Do(up.Done)
				}
			})
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Run(ctx); err != nil {
					errc <- err
					once.Do(up.Done)
				}
			}()
		}
		done := make(chan struct{})
		go func() { up.Wait(); close(done) }()
		select {
		case <-done:
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		case <-time.After(60 * time.Second):
			return errors.New("sessions did not come up within 60s")
		}
	}
	fmt.Printf("ready %d\n", o.count)
	<-ctx.Done()
	wg.Wait()
	return nil
}

// memStats is what /bench/memstats reports, after a GC.
type memStats struct {
	Goroutines                       int
	HeapInuse, HeapAlloc, StackInuse uint64
	Sys                              uint64
}

// serveProfiling starts net/http/pprof plus two endpoints the run uses to
// profile exactly one phase: /bench/cpu?file=F starts a CPU profile into F,
// /bench/cpu/stop ends it; /bench/heap?file=F writes a heap profile.
func serveProfiling(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	var mu sync.Mutex
	var cpuFile *os.File
	mux.HandleFunc("/bench/cpu", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		f, err := os.Create(r.URL.Query().Get("file"))
		if err == nil {
			if err = rpprof.StartCPUProfile(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cpuFile = f
	})
	mux.HandleFunc("/bench/cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if cpuFile != nil {
			rpprof.StopCPUProfile()
			cpuFile.Close()
			cpuFile = nil
		}
	})
	mux.HandleFunc("/bench/heap", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(r.URL.Query().Get("file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		if err := rpprof.Lookup("heap").WriteTo(f, 0); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/bench/memstats", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		json.NewEncoder(w).Encode(memStats{
			Goroutines: runtime.NumGoroutine(),
			HeapInuse:  m.HeapInuse,
			HeapAlloc:  m.HeapAlloc,
			StackInuse: m.StackInuse,
			Sys:        m.Sys,
		})
	})
	go http.Serve(ln, mux)
	fmt.Printf("pprof %s\n", ln.Addr())
	return nil
}
