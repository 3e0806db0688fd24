package auth

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/porthole/porthole/internal/limits"
)

// throttle limits failed authentications per source address: after burst
// failures, one more per 1/rate; an address out of allowance is refused
// before its credential is checked, so guessing keys costs the guesser
// time and the server no database queries. IPv6 sources are counted by
// their /64 (limits.AddrKey).
type throttle struct {
	limit rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	addr map[string]*throttleEntry
	// scanned counts entries looked at to make room (tests bound it).
	scanned int
}

type throttleEntry struct {
	lim  *rate.Limiter
	last time.Time
}

// maxThrottled bounds the memory the throttle can use; when it is full, a
// new address evicts one of a few entries looked at (evictSample).
const maxThrottled = 10000

// evictSample is how many entries a failure looks at to make room in a
// full table. Map order is random, so this approximates evicting the
// longest idle without scanning the table under the lock.
const evictSample = 8

func newThrottle(perMinute float64, burst int) *throttle {
	if burst <= 0 || perMinute <= 0 {
		return nil
	}
	return &throttle{limit: rate.Limit(perMinute / 60), burst: burst, max: maxThrottled, addr: map[string]*throttleEntry{}}
}

// hostOf is the key remote is counted under.
func hostOf(remote string) string {
	h := remote
	if hh, _, err := net.SplitHostPort(remote); err == nil {
		h = hh
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return limits.AddrKey(ip).String()
	}
	return h
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

// evict looks at up to evictSample entries: it drops those whose
// allowance has refilled (they hold nothing a new entry would not) and,
// if none has, the longest idle of them. Work per failure is constant,
// whatever the table size.
func (t *throttle) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	n := 0
	for h, e := range t.addr {
		if n == evictSample {
			break
		}
		n++
		if e.lim.TokensAt(now) >= float64(t.burst) {
			delete(t.addr, h)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = h, e.last
		}
	}
	t.scanned += n
	if len(t.addr) >= t.max && oldest != "" {
		delete(t.addr, oldest)
	}
}
