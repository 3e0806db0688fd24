package limits

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// IPTable keeps per-address state for visitors or tunnel clients: open
// connections and a request-rate bucket. It is sharded, so the request path
// never takes a table-wide lock, and bounded: entries idle for a while are
// evicted, and past MaxEntries new addresses share one overflow entry (so
// an attacker spraying addresses throttles only itself and its peers in the
// overflow, never memory). An IPv6 address is counted by its /64 (see
// AddrKey). No request scans a shard: a full shard looks at no more than
// evictSample entries for one to drop; the periodic Sweep does the rest.
type IPTable struct {
	rate    rate.Limit
	burst   int
	maxConn int
	now     func() time.Time
	seed    maphash.Seed
	shards  [64]ipShard
	// MaxEntries bounds the table; IdleAfter is how long an entry with no
	// open connection lives after its last use.
	maxEntries int
	idleAfter  time.Duration
	overflow   *ipEntry
	// scanned counts entries looked at to make room on the request path
	// (tests check that it stays bounded).
	scanned atomic.Int64
}

type ipShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*ipEntry
}

// evictSample bounds the entries a request looks at to make room in a
// full shard.
const evictSample = 8

type ipEntry struct {
	conns    int
	pending  int // attempts in flight (Reserve)
	limiter  *rate.Limiter
	lastSeen time.Time
}

// NewIPTable returns a table enforcing perSecond/burst requests and maxConn
// concurrent connections per address; zero values disable each.
func NewIPTable(perSecond float64, burst, maxConn int, now func() time.Time) *IPTable {
	if now == nil {
		now = time.Now
	}
	if perSecond > 0 && burst <= 0 {
		burst = max(1, int(perSecond+0.999))
	}
	t := &IPTable{
		rate: rate.Limit(perSecond), burst: burst, maxConn: maxConn, now: now,
		seed: maphash.MakeSeed(), maxEntries: 100_000, idleAfter: 5 * time.Minute,
	}
	for i := range t.shards {
		t.shards[i].m = make(map[netip.Addr]*ipEntry)
	}
	t.overflow = t.newEntry()
	return t
}

// Enabled reports whether the table limits anything.
func (t *IPTable) Enabled() bool { return t != nil && (t.rate > 0 || t.maxConn > 0) }

func (t *IPTable) newEntry() *ipEntry {
	e := &ipEntry{}
	if t.rate > 0 {
		e.limiter = rate.NewLimiter(t.rate, t.burst)
	}
	return e
}

// AddrKey is the key an address is counted under: IPv4 (also mapped
// into IPv6) as is, IPv6 by its /64. A single IPv6 host usually holds a
// whole /64 and can pick any address in it, so a per-/128 limit would be
// no limit; hosts sharing a /64 share its budget, as hosts behind one
// IPv4 NAT share theirs.
func AddrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func (t *IPTable) shard(key netip.Addr) *ipShard {
	b := key.As16()
	return &t.shards[maphash.Bytes(t.seed, b[:])%uint64(len(t.shards))]
}

// entry returns ip's entry with its shard locked; the caller unlocks.
func (t *IPTable) entry(ip netip.Addr) (*ipEntry, *ipShard) {
	ip = AddrKey(ip)
	s := t.shard(ip)
	s.mu.Lock()
	e, ok := s.m[ip]
	if !ok {
		if len(s.m) >= t.maxEntries/len(t.shards) {
			t.makeRoomLocked(s)
		}
		if len(s.m) >= t.maxEntries/len(t.shards) {
			// Still full of busy entries: share the overflow entry. It is
			// guarded by shard 0's lock.
			s.mu.Unlock()
			s = &t.shards[0]
			s.mu.Lock()
			return t.overflow, s
		}
		e = t.newEntry()
		s.m[ip] = e
	}
	e.lastSeen = t.now()
	return e, s
}

// Allow takes one request token for ip. When refused it returns how long
// until a token is available.
func (t *IPTable) Allow(ip netip.Addr) (ok bool, retryAfter time.Duration) {
	if t == nil || t.rate <= 0 {
		return true, 0
	}
	e, s := t.entry(ip)
	defer s.mu.Unlock()
	return allow(e.limiter, t.now())
}

// Reserve starts an attempt from ip that costs a token only if it fails,
// such as a password check, and reports whether ip may make it. Attempts
// in flight count against the tokens left, so concurrent attempts from
// one address cannot together exceed its burst; done ends the attempt,
// taking the token when failed. done is never nil and is called once.
func (t *IPTable) Reserve(ip netip.Addr) (ok bool, retryAfter time.Duration, done func(failed bool)) {
	if t == nil || t.rate <= 0 {
		return true, 0, func(bool) {}
	}
	e, s := t.entry(ip)
	defer s.mu.Unlock()
	left := e.limiter.TokensAt(t.now()) - float64(e.pending)
	if left < 1 {
		wait := time.Duration((1 - left) / float64(t.rate) * float64(time.Second))
		return false, max(wait, time.Millisecond), func(bool) {}
	}
	e.pending++
	return true, 0, func(failed bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		e.pending--
		if failed {
			e.limiter.AllowN(t.now(), 1)
		}
	}
}

// Acquire counts a new connection from ip; it returns false (and counts
// nothing) when ip already has the maximum open. Release must follow a
// successful Acquire.
func (t *IPTable) Acquire(ip netip.Addr) bool {
	if t == nil || t.maxConn <= 0 {
		return true
	}
	e, s := t.entry(ip)
	defer s.mu.Unlock()
	if e.conns >= t.maxConn {
		return false
	}
	e.conns++
	return true
}

// Release ends a connection counted by Acquire. It never creates an
// entry: a connection that was counted in the overflow entry is taken off
// it when ip has no open connection counted in an entry of its own, even
// if ip could have one by now. (Taking it off a new entry instead would
// leak the overflow count until every overflow address is refused.)
func (t *IPTable) Release(ip netip.Addr) {
	if t == nil || t.maxConn <= 0 {
		return
	}
	ip = AddrKey(ip)
	s := t.shard(ip)
	s.mu.Lock()
	if e, ok := s.m[ip]; ok && e.conns > 0 {
		e.conns--
		e.lastSeen = t.now()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s = &t.shards[0]
	s.mu.Lock()
	if t.overflow.conns > 0 {
		t.overflow.conns--
	}
	s.mu.Unlock()
}

// Len returns the number of tracked addresses.
func (t *IPTable) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// Sweep evicts idle entries from every shard; the server calls it
// periodically.
func (t *IPTable) Sweep() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		t.evictLocked(s)
		s.mu.Unlock()
	}
}

func (t *IPTable) evictLocked(s *ipShard) {
	now := t.now()
	cutoff := now.Add(-t.idleAfter)
	for ip, e := range s.m {
		if e.lastSeen.Before(cutoff) && t.spent(e, now) {
			delete(s.m, ip)
		}
	}
}

// spent reports whether e holds nothing a new entry would not: no open
// connection and a full bucket. Dropping it hands its address nothing.
func (t *IPTable) spent(e *ipEntry, now time.Time) bool {
	return e.conns == 0 && (e.limiter == nil || e.limiter.TokensAt(now) >= float64(t.burst))
}

// makeRoomLocked drops spent entries among at most evictSample of a full
// shard's (map order is random, so successive calls look at different
// ones). It never scans the shard: under an address spray every new
// address would pay for that.
func (t *IPTable) makeRoomLocked(s *ipShard) {
	now := t.now()
	n := 0
	for ip, e := range s.m {
		if n == evictSample {
			break
		}
		n++
		if t.spent(e, now) {
			delete(s.m, ip)
		}
	}
	t.scanned.Add(int64(n))
}

// SetBounds changes the eviction bounds (for tests and tuning).
func (t *IPTable) SetBounds(maxEntries int, idleAfter time.Duration) {
	t.maxEntries = max(maxEntries, len(t.shards))
	t.idleAfter = idleAfter
}

// allow takes a token from l now, or reports the wait without taking one.
func allow(l *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Bucket is a token bucket for one tunnel's or session's request rate.
type Bucket struct {
	l   *rate.Limiter
	now func() time.Time
}

// NewBucket returns a bucket, or nil (allowing everything) when perSecond
// is zero.
func NewBucket(perSecond float64, burst int, now func() time.Time) *Bucket {
	if perSecond <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	if burst <= 0 {
		burst = max(1, int(perSecond+0.999))
	}
	return &Bucket{l: rate.NewLimiter(rate.Limit(perSecond), burst), now: now}
}

// Allow takes a token or reports how long until one is available.
func (b *Bucket) Allow() (bool, time.Duration) {
	if b == nil {
		return true, 0
	}
	return allow(b.l, b.now())
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least 1, for the
// Retry-After header (RFC 9110 section 10.2.3).
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(1, s)
}
