package limits

import (
	"context"
	"net"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Bandwidth shapes one user's traffic in one direction. All the user's
// streams share it, so the limit holds however many tunnels and visitors
// the user has.
type Bandwidth struct {
	l      *rate.Limiter
	chunk  int
	waited atomic.Int64 // transfers that had to wait
	// OnWait, when set, is called each time a transfer is slowed.
	OnWait func()
}

// NewBandwidth returns a shaper for bytesPerSecond, or nil (no shaping) when
// it is zero. The bucket holds a tenth of a second's worth (at least 16 KiB)
// so that shaped traffic stays smooth instead of bursting.
func NewBandwidth(bytesPerSecond int64) *Bandwidth {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := int(max(16<<10, bytesPerSecond/10))
	return &Bandwidth{l: rate.NewLimiter(rate.Limit(bytesPerSecond), burst), chunk: burst}
}

// Wait blocks until n bytes may pass, in chunks no larger than the bucket.
func (b *Bandwidth) Wait(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	for n > 0 {
		c := min(n, b.chunk)
		// The delay is taken on the same clock as the reservation, so
		// an injected clock (tests) shapes as the real one does.
		now := timeNow()
		if r := b.l.ReserveN(now, c); r.OK() {
			if d := r.DelayFrom(now); d > 0 {
				b.waited.Add(1)
				if b.OnWait != nil {
					b.OnWait()
				}
				if err := sleepCtx(ctx, d); err != nil {
					r.CancelAt(timeNow())
					return err
				}
			}
		}
		n -= c
	}
	return nil
}

// Waited reports how many transfers were slowed so far.
func (b *Bandwidth) Waited() int64 {
	if b == nil {
		return 0
	}
	return b.waited.Load()
}

// ShapedConn applies an inbound and an outbound shaper to a connection:
// bytes read count against in, bytes written against out. Writes are split
// so no single write exceeds the bucket.
type ShapedConn struct {
	net.Conn
	In, Out *Bandwidth
	Ctx     context.Context
	cancel  context.CancelFunc
}

// Shape wraps c so that a wait in progress ends when c is closed (an
// abandoned transfer must not keep drawing on the user's bucket).
func Shape(c net.Conn, in, out *Bandwidth) *ShapedConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &ShapedConn{Conn: c, In: in, Out: out, Ctx: ctx, cancel: cancel}
}

// Close ends any wait in progress, then closes the connection.
func (c *ShapedConn) Close() error {
	if c.cancel != nil {
		c.cancel()
	}
	return c.Conn.Close()
}

func (c *ShapedConn) Read(p []byte) (int, error) {
	if c.In != nil && len(p) > c.In.chunk {
		p = p[:c.In.chunk]
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.In != nil {
		if werr := c.In.Wait(c.Ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

func (c *ShapedConn) Write(p []byte) (int, error) {
	if c.Out == nil {
		return c.Conn.Write(p)
	}
	written := 0
	for len(p) > 0 {
		k := min(len(p), c.Out.chunk)
		if err := c.Out.Wait(c.Ctx, k); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

// Shrink passes an idle connection's buffer release on.
func (c *ShapedConn) Shrink() {
	if s, ok := c.Conn.(interface{ Shrink() }); ok {
		s.Shrink()
	}
}

// CloseWrite passes a half-close on when the connection supports it.
func (c *ShapedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
