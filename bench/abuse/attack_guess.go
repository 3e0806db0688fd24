package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// guessUser and guessPassword are the attacker tunnel's --basic-auth.
const guessUser, guessPassword = "admin", "correct-horse-battery-staple"

// basicAuthGuess: wrong passwords for the attacker's own tunnel, which
// runs with --basic-auth, as fast as the server answers, by p.Workers
// workers on a connection per request:
//   - half of them from the 4 guessAddrs: once an address is throttled
//     (429), one request in 10 it sends has the right password, which
//     must get 429 too (right_while_blocked_429); a 200
//     (right_while_blocked_200) is one of the tries an address earns
//     back each second, and more of them than that would mean the
//     password is checked before the throttle;
//   - half from fresh addresses (guessSprayAddr), each used until it is
//     throttled: the spread a botnet has, which the per-address
//     throttle does not stop and only the server-wide bound on password
//     hashing does.
func basicAuthGuess(ctx context.Context, p params, c *counters) error {
	var wg sync.WaitGroup
	var fresh atomic.Int64
	blocked := make([]atomic.Bool, len(guessAddrs))
	for w := range p.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := w%2 == 0
			src := guessAddrs[w/2%len(guessAddrs)]
			if !local {
				src = guessSprayAddr(int(fresh.Add(1)))
				c.add("spray_addresses", 1)
			}
			for i := 0; ctx.Err() == nil; i++ {
				pass := fmt.Sprintf("guess-%d-%d", w, i)
				right := local && blocked[w/2%len(guessAddrs)].Load() && i%10 == 0
				if right {
					pass = guessPassword
				}
				status := guessRequest(ctx, p, src, pass)
				group := "spray"
				if local {
					group = "local"
				}
				switch {
				case status == 0:
					if ctx.Err() == nil {
						c.add(group+"_no_answer", 1)
						sleepCtx(ctx, 100*time.Millisecond)
					}
					continue
				case right:
					c.add(fmt.Sprintf("right_while_blocked_%d", status), 1)
				default:
					c.add(fmt.Sprintf("%s_status_%d", group, status), 1)
				}
				if status == 429 {
					if local {
						blocked[w/2%len(guessAddrs)].Store(true)
					} else {
						src = guessSprayAddr(int(fresh.Add(1)))
						c.add("spray_addresses", 1)
					}
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// guessRequest sends one request with the password from src and returns
// the answer's status (0 for none).
func guessRequest(ctx context.Context, p params, src netip.Addr, pass string) int {
	conn, err := dialFrom(ctx, src, p.HTTP)
	if err != nil {
		return 0
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cred := base64.StdEncoding.EncodeToString([]byte(guessUser + ":" + pass))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n", p.Host, cred)
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(conn, buf, 12)
	if n < 12 {
		return 0
	}
	return statusOf(buf[:n])
}
