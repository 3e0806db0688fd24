package client

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// localDialer reaches the local app. For "localhost" it tries 127.0.0.1
// and ::1 itself, starting with the one that worked last: apps listen on
// either, and /etc/hosts does not always map localhost to both.
type localDialer struct {
	d        net.Dialer
	preferV6 atomic.Bool
}

func newLocalDialer() *localDialer {
	return &localDialer{d: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
}

func (l *localDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "localhost" {
		return l.d.DialContext(ctx, network, addr)
	}
	first, second := "127.0.0.1", "::1"
	if l.preferV6.Load() {
		first, second = second, first
	}
	c, err := l.d.DialContext(ctx, "tcp", net.JoinHostPort(first, port))
	if err == nil {
		return c, nil
	}
	c, err2 := l.d.DialContext(ctx, "tcp", net.JoinHostPort(second, port))
	if err2 != nil {
		return nil, err
	}
	l.preferV6.Store(second == "::1")
	return c, nil
}
