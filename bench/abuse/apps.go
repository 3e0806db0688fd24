package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/porthole/porthole/bench/internal/harness"
)

// The local apps: the legitimate one runs in the measuring process; the
// attackers' own apps run in a process of their own (runApps), so that
// serving an attack competes with the measurement only for the CPUs.

// legitApp answers every request with 1 KiB.
func legitApp() http.Handler {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		w.Write(body)
	})
}

// bulkApp sends ?size= bytes, streamed.
func bulkApp() http.Handler {
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(rand.Uint32())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// startEvilApp listens for the malicious app (serveEvil) on loopback.
func startEvilApp() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	big := evilHeaderBlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveEvil(c, big)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runApps is the apps process: it prints "ports BULK EVIL SMALL" and
// serves until interrupted.
func runApps() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bulk, stopBulk, err := harness.StartApp(bulkApp())
	if err != nil {
		log.Fatal(err)
	}
	defer stopBulk()
	evil, err := startEvilApp()
	if err != nil {
		log.Fatal(err)
	}
	small, stopSmall, err := harness.StartApp(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer stopSmall()
	fmt.Printf("ports %d %d %d\n", bulk, evil, small)
	<-ctx.Done()
}
