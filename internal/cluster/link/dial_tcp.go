package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// DialTCP opens a forwarded TCP connection for port, claimed at gen, at
// the node at addr, on behalf of visitor. It returns once the holder
// accepted it; ErrStale if the holder does not hold port at gen, another
// error if it refused or could not be reached. CloseWrite on the
// connection half-closes it: the holder's side reads EOF.
func (d *Dialer) DialTCP(ctx context.Context, addr string, port int, gen uint64, visitor netip.AddrPort) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("cluster link: port %d out of range", port)
	}
	p, err := d.peer(addr)
	if err != nil {
		return nil, err
	}
	pre, err := appendTCPPreamble(nil, tcpPreamble{port: uint16(port), gen: gen, visitor: visitor, from: d.self})
	if err != nil {
		return nil, fmt.Errorf("cluster link: visitor address: %w", err)
	}
	c, err := p.open(ctx, kindTCP)
	if err != nil {
		d.stats.failed.Add(1)
		return nil, err
	}
	d.stats.tcpOut.Add(1)
	deadline := time.Now().Add(preambleTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// pre starts with the kind byte, which open wrote already.
	if _, err := c.Write(pre[1:]); err != nil {
		c.Close()
		d.stats.failed.Add(1)
		return nil, fmt.Errorf("cluster link to %s: %w", addr, err)
	}
	var ans [2]byte
	if _, err := io.ReadFull(c, ans[:1]); err != nil {
		c.Close()
		d.stats.failed.Add(1)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cluster link to %s: no answer: %w", addr, err)
	}
	switch ans[0] {
	case tcpOK:
		if !stop() {
			c.Close()
			return nil, ctx.Err()
		}
		c.SetDeadline(time.Time{})
		return c, nil
	case tcpStale:
		c.Close()
		d.stats.staleOut.Add(1)
		return nil, ErrStale
	case tcpRefused:
		msg := "refused"
		if _, err := io.ReadFull(c, ans[1:2]); err == nil {
			b := make([]byte, ans[1])
			if _, err := io.ReadFull(c, b); err == nil {
				msg = string(b)
			}
		}
		c.Close()
		return nil, &RefusedError{Msg: msg}
	default:
		c.Close()
		return nil, errors.New("cluster link: holder answered with an unknown code")
	}
}

// RefusedError is DialTCP's error when the holder's Handler refused the
// connection with an error other than ErrStale.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return "cluster link: holder refused the connection: " + e.Msg }
