package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
)

// handshakeFlood: tunnel handshakes with a wrong API key (well formed, a
// fresh random one each time), each on a new connection, at p.Rate a
// second from handshakeAddrs in turn, by p.Workers workers; a handshake
// the workers cannot start in time is skipped (and shows as an achieved
// rate below the target). Counts the answers by status: 401 is a
// credential checked and refused, 429 the failed-authentication throttle.
func handshakeFlood(ctx context.Context, p params, c *counters) error {
	tokens := make(chan int, p.Workers)
	var wg sync.WaitGroup
	for range p.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := range tokens {
				c.add(badHandshake(ctx, p, i, buf), 1)
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	issued := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		for due := int(time.Since(start).Seconds() * p.Rate); issued < due; issued++ {
			select {
			case tokens <- issued:
			default:
				c.add("skipped", 1)
			}
		}
	}
	close(tokens)
	wg.Wait()
	return nil
}

func badHandshake(ctx context.Context, p params, i int, buf []byte) string {
	conn, err := dialFrom(ctx, handshakeAddrs[i%len(handshakeAddrs)], p.Tunnel)
	if err != nil {
		return "dial_error"
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	key, _, _ := auth.NewAPIKey()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: %s\r\n"+
		"Authorization: Bearer %s\r\n\r\n", p.Tunnel, protocol.Subprotocol, key)
	n, err := io.ReadAtLeast(conn, buf, 12)
	if n < 12 {
		if ctx.Err() != nil {
			return "interrupted"
		}
		return "no_answer"
	}
	return fmt.Sprintf("status_%d", statusOf(buf[:n]))
}
