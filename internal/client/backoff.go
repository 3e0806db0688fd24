package client

import (
	"math/rand/v2"
	"time"
)

// backoffDelay returns the wait before reconnect attempt n (0-based):
// "full jitter", a uniform draw from [0, min(max, base*2^n)], which spreads
// the reconnects of many clients after a server restart instead of having
// them arrive together.
func backoffDelay(b Backoff, n int) time.Duration {
	ceiling := b.Max.D()
	if n < 32 {
		if d := b.Base.D() << n; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}
