package auth

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// throttle limits failed authentications per source address: after burst
// failures, one more per 1/rate; an address out of allowance is refused
// before its credential is checked, so guessing keys costs the guesser
// time and the server no database queries.
type throttle struct {
	limit rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	addr map[string]*throttleEntry
}

type throttleEntry struct {
	lim  *rate.Limiter
	last time.Time
}

// maxThrottled bounds the memory the throttle can use; addresses beyond
// it evict the longest-idle one.
const maxThrottled = 10000

func newThrottle(perMinute float64, burst int) *throttle {
	if burst <= 0 || perMinute <= 0 {
		return nil
	}
	return &throttle{limit: rate.Limit(perMinute / 60), burst: burst, max: maxThrottled, addr: map[string]*throttleEntry{}}
}

func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// blocked reports whether remote has no failures left, and when it gets
// one back.
func (t *throttle) blocked(remote string, now time.Time) (time.Duration, bool) {
	if t == nil {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.addr[hostOf(remote)]
	if e == nil || e.lim.TokensAt(now) >= 1 {
		return 0, false
	}
	r := e.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return wait, true
}

// failed charges remote for one failed attempt.
func (t *throttle) failed(remote string, now time.Time) {
	if t == nil {
		return
	}
	host := hostOf(remote)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.addr[host]
	if e == nil {
		if len(t.addr) >= t.max {
			t.evict(now)
		}
		e = &throttleEntry{lim: rate.NewLimiter(t.limit, t.burst)}
		t.addr[host] = e
	}
	e.last = now
	e.lim.AllowN(now, 1)
}

// evict drops entries whose allowance has refilled (they hold nothing a
// new entry would not) and, if none has, the longest idle.
func (t *throttle) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for h, e := range t.addr {
		if e.lim.TokensAt(now) >= float64(t.burst) {
			delete(t.addr, h)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = h, e.last
		}
	}
	if len(t.addr) >= t.max && oldest != "" {
		delete(t.addr, oldest)
	}
}
