package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hugeHeaders: the attacker's own local app (evilApp) answers /big with
// a 30 MB header block and /1xx with an endless run of 100 Continue.
// p.Workers visitors request them in turn through the attacker's tunnel
// and count what the server answers: 502 is the header limits working;
// a 200 (for /big) or a stream of 1xx (for /1xx) means the server passed
// it on.
func hugeHeaders(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	for w := range p.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the workers ask for each: an endless 1xx that the
			// server never ends holds its worker for 30 s.
			path := "big"
			if w%2 == 1 {
				path = "1xx"
			}
			for ctx.Err() == nil {
				outcome := headerRequest(ctx, p, path)
				if ctx.Err() != nil && outcome == "error" {
					outcome = "unanswered_at_end" // cut short by the phase's end
				}
				c.add(path+"_"+outcome, 1)
				if outcome == "error" {
					sleepCtx(ctx, 100*time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// headerRequest sends GET /path and reads the answer's status lines:
// "status_N" for a final status N, "1xx_passed" when more than 100
// informational responses came through, "hung" when there was no final
// answer within 30 s, "error" when the connection failed.
func headerRequest(ctx context.Context, p params, path string) string {
	conn, err := dialFrom(ctx, headerAddrs[0], p.HTTP)
	if err != nil {
		return "error"
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, p.Host)
	tp := textproto.NewReader(bufio.NewReaderSize(conn, 64<<10))
	for informational := 0; ; {
		line, err := tp.ReadLine()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "hung"
		}
		if err != nil {
			return "error"
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return "error"
		}
		code, _ := strconv.Atoi(f[1])
		if code >= 200 || code < 100 {
			// The status is all we want: a 200 here came with the whole
			// header block, which the server read and passed on.
			return fmt.Sprintf("status_%d", code)
		}
		if informational++; informational > 100 {
			return "1xx_passed"
		}
		// Skip this 1xx's headers.
		for {
			l, err := tp.ReadLine()
			if err != nil {
				return "error"
			}
			if l == "" {
				break
			}
		}
	}
}

// evilHeaderBlock is the /big answer's 30 MB header block: 30,000
// headers of 1 KiB.
func evilHeaderBlock() []byte {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\n")
	v := strings.Repeat("x", 1000)
	for i := range 30_000 {
		fmt.Fprintf(&b, "X-Big-%05d: %s\r\n", i, v)
	}
	b.WriteString("Content-Length: 2\r\nConnection: close\r\n\r\nok")
	return []byte(b.String())
}

// serveEvil answers one connection of the malicious app: it reads the
// request's head and answers per its path, then closes.
func serveEvil(conn io.ReadWriteCloser, big []byte) {
	defer conn.Close()
	tp := textproto.NewReader(bufio.NewReader(conn))
	line, err := tp.ReadLine()
	if err != nil {
		return
	}
	if _, err := tp.ReadMIMEHeader(); err != nil {
		return
	}
	if strings.Contains(line, " /1xx ") {
		cont := []byte(strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 1000))
		for {
			if _, err := conn.Write(cont); err != nil {
				return
			}
		}
	}
	conn.Write(big)
}
