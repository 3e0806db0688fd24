package limits

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// addr returns the n-th address of 10.0.0.0/8.
func addr(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func TestIPTableRate(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(2, 3, 0, clk.Now)
	a, b := addr(1), addr(2)
	for i := range 3 {
		if ok, _ := tb.Allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := tb.Allow(a)
	if ok {
		t.Fatal("request past the burst allowed")
	}
	if wait != 500*time.Millisecond {
		t.Fatalf("retry after %v, want 500ms at 2/s", wait)
	}
	// A refusal takes no token: the wait does not grow with retries.
	if _, wait2 := tb.Allow(a); wait2 != wait {
		t.Fatalf("second refusal waits %v, first %v", wait2, wait)
	}
	// Another address has its own bucket.
	if ok, _ := tb.Allow(b); !ok {
		t.Fatal("a second address was refused for the first one's requests")
	}
	clk.Advance(500 * time.Millisecond)
	if ok, _ := tb.Allow(a); !ok {
		t.Fatal("refused after the advertised wait")
	}
	if ok, _ := tb.Allow(a); ok {
		t.Fatal("the bucket refilled more than one token in 500ms at 2/s")
	}
	// IPv4-mapped IPv6 and IPv4 are the same visitor only if the caller
	// unmaps; the table keys on the address as given.
	if tb.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tb.Len())
	}
}

func TestIPTableDefaultBurst(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(2.5, 0, 0, clk.Now) // burst defaults to the rate, rounded up
	n := 0
	for {
		ok, _ := tb.Allow(addr(1))
		if !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("burst %d, want 3", n)
	}
}

func TestIPTableConnections(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(0, 0, 2, clk.Now)
	a := addr(1)
	if !tb.Acquire(a) || !tb.Acquire(a) {
		t.Fatal("connections under the cap refused")
	}
	if tb.Acquire(a) {
		t.Fatal("third connection allowed with a cap of 2")
	}
	if !tb.Acquire(addr(2)) {
		t.Fatal("another address refused")
	}
	tb.Release(a)
	if !tb.Acquire(a) {
		t.Fatal("refused after a release")
	}
	// Releasing more than was acquired never goes negative.
	for range 5 {
		tb.Release(addr(3))
	}
	if !tb.Acquire(addr(3)) || !tb.Acquire(addr(3)) || tb.Acquire(addr(3)) {
		t.Fatal("spurious releases changed the cap")
	}
	// Rate 0 and cap 0: nothing is limited.
	off := NewIPTable(0, 0, 0, clk.Now)
	if off.Enabled() {
		t.Fatal("a table with no limits says it is enabled")
	}
	for range 1000 {
		if !off.Acquire(a) {
			t.Fatal("a table with no cap refused")
		}
		if ok, _ := off.Allow(a); !ok {
			t.Fatal("a table with no rate refused")
		}
	}
	if off.Len() != 0 {
		t.Fatalf("a table with no limits keeps %d entries", off.Len())
	}
	var nilTable *IPTable
	if nilTable.Enabled() || !nilTable.Acquire(a) {
		t.Fatal("a nil table limits")
	}
	nilTable.Release(a)
	if ok, _ := nilTable.Allow(a); !ok {
		t.Fatal("a nil table refused")
	}
}

func TestIPTableEviction(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(10, 10, 5, clk.Now)
	tb.SetBounds(10_000, time.Minute)
	for i := range 1000 {
		tb.Allow(addr(i))
	}
	tb.Acquire(addr(5000)) // stays open
	if tb.Len() != 1001 {
		t.Fatalf("Len = %d, want 1001", tb.Len())
	}
	// Not yet idle long enough.
	clk.Advance(30 * time.Second)
	tb.Sweep()
	if tb.Len() != 1001 {
		t.Fatalf("after 30s Len = %d, want 1001", tb.Len())
	}
	clk.Advance(31 * time.Second)
	tb.Sweep()
	if tb.Len() != 1 {
		t.Fatalf("after the idle time Len = %d, want 1 (the open connection's)", tb.Len())
	}
	tb.Release(addr(5000))
	clk.Advance(2 * time.Minute)
	tb.Sweep()
	if tb.Len() != 0 {
		t.Fatalf("Len = %d after everything went idle", tb.Len())
	}
}

// TestIPTableEvictionKeepsDrainedBuckets: an address that spent its
// burst keeps its entry until the bucket has refilled, so that evicting
// it does not hand it a fresh burst.
func TestIPTableEvictionKeepsDrainedBuckets(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(1.0/120, 1, 0, clk.Now) // one request per two minutes
	tb.SetBounds(10_000, time.Minute)
	a := addr(7)
	if ok, _ := tb.Allow(a); !ok {
		t.Fatal("first request refused")
	}
	clk.Advance(61 * time.Second)
	tb.Sweep()
	if tb.Len() != 1 {
		t.Fatal("an address with an empty bucket was evicted")
	}
	if ok, _ := tb.Allow(a); ok {
		t.Fatal("a drained address got a fresh burst")
	}
	clk.Advance(2 * time.Minute)
	tb.Sweep()
	if tb.Len() != 0 {
		t.Fatalf("Len = %d after the bucket refilled and the address went idle", tb.Len())
	}
}

// TestIPTableBounded sprays addresses at a small table: it never holds
// more than its bound, and the addresses past it share one overflow
// entry (so they are limited together, not let through).
func TestIPTableBounded(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(0, 0, 1, clk.Now)
	tb.SetBounds(64, time.Minute) // one entry per shard
	admitted := 0
	for i := range 10_000 {
		if tb.Acquire(addr(i)) {
			admitted++
		}
	}
	if n := tb.Len(); n > 64 {
		t.Fatalf("Len = %d, bound is 64", n)
	}
	// One per shard, plus one in the shared overflow entry.
	if admitted != tb.Len()+1 {
		t.Fatalf("%d connections admitted with %d entries; want one per entry plus one overflow", admitted, tb.Len())
	}
	// The rate side of the overflow is shared as well.
	rt := NewIPTable(1, 5, 0, clk.Now)
	rt.SetBounds(64, time.Minute)
	allowed := 0
	for i := range 10_000 {
		if ok, _ := rt.Allow(addr(i)); ok {
			allowed++
		}
	}
	if max := 64*5 + 5; allowed > max {
		t.Fatalf("%d requests allowed from a spray; at most %d (a burst per entry and one for the overflow)", allowed, max)
	}
	// Once the entries go idle, new addresses get entries of their own.
	clk.Advance(2 * time.Minute)
	if ok, _ := rt.Allow(addr(20_000)); !ok {
		t.Fatal("a new address refused after the table went idle")
	}
}

// TestIPTableOverflowRelease: a connection counted in the overflow entry
// is released from it even when, by the time it closes, its address could
// have an entry of its own. Otherwise the overflow entry leaks counts
// until every overflow address is refused for good.
func TestIPTableOverflowRelease(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(0, 0, 1, clk.Now)
	tb.SetBounds(64, time.Minute) // one entry per shard
	// Find addresses that share a shard with addr(0).
	s0 := tb.shard(addr(0))
	var same []netip.Addr
	for i := 1; len(same) < 4; i++ {
		if tb.shard(addr(i)) == s0 {
			same = append(same, addr(i))
		}
	}
	a, b, c, d := addr(0), same[0], same[1], same[2]
	if !tb.Acquire(a) {
		t.Fatal("first address refused")
	}
	if !tb.Acquire(b) {
		t.Fatal("an address in the overflow refused while the overflow is empty")
	}
	// a goes away and its entry is evicted; then b's connection ends.
	tb.Release(a)
	clk.Advance(2 * time.Minute)
	tb.Sweep()
	tb.Release(b)
	// The shard fills again, and another address lands in the overflow:
	// it must find the overflow empty.
	if !tb.Acquire(c) {
		t.Fatal("a new address refused while its shard has room")
	}
	if !tb.Acquire(d) {
		t.Fatal("overflow address refused: a released overflow connection was never subtracted")
	}
	tb.Release(c)
	tb.Release(d)
	// An address with connections both in the overflow and in an entry of
	// its own gets all of them back.
	e := same[3]
	tb2 := NewIPTable(0, 0, 2, clk.Now)
	tb2.SetBounds(64, time.Minute)
	tb2.Acquire(a) // fills the shard
	if !tb2.Acquire(e) {
		t.Fatal("overflow refused")
	}
	tb2.Release(a)
	clk.Advance(2 * time.Minute)
	tb2.Sweep()
	if !tb2.Acquire(e) { // now an entry of its own
		t.Fatal("refused")
	}
	tb2.Release(e)
	tb2.Release(e)
	clk.Advance(2 * time.Minute)
	tb2.Sweep()
	tb2.Acquire(c) // fills the shard again
	if !tb2.Acquire(d) || !tb2.Acquire(d) {
		t.Fatal("overflow kept a count after every connection was released")
	}
}

func TestIPTableConcurrent(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(1000, 1000, 3, clk.Now)
	tb.SetBounds(1000, time.Minute)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ip := addr(g*100_000 + i%1500)
				if tb.Acquire(ip) {
					tb.Allow(ip)
					tb.Release(ip)
				}
			}
		}()
	}
	wg.Wait()
	if n := tb.Len(); n > 1000 {
		t.Fatalf("Len = %d over the bound of 1000", n)
	}
	// Every connection was released: once idle, nothing is left.
	clk.Advance(2 * time.Minute)
	tb.Sweep()
	if n := tb.Len(); n != 0 {
		t.Fatalf("%d entries left after every connection closed and the table went idle", n)
	}
	tb.shards[0].mu.Lock()
	n := tb.overflow.conns
	tb.shards[0].mu.Unlock()
	if n != 0 {
		t.Fatalf("the overflow entry counts %d connections after all were released", n)
	}
}

func TestBucket(t *testing.T) {
	clk := newFakeClock()
	if NewBucket(0, 10, clk.Now) != nil {
		t.Fatal("a zero rate makes a bucket")
	}
	var none *Bucket
	if ok, _ := none.Allow(); !ok {
		t.Fatal("a nil bucket refused")
	}
	b := NewBucket(5, 10, clk.Now)
	for i := range 10 {
		if ok, _ := b.Allow(); !ok {
			t.Fatalf("request %d of a burst of 10 refused", i+1)
		}
	}
	ok, wait := b.Allow()
	if ok || wait != 200*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%v, want refused for 200ms", ok, wait)
	}
	clk.Advance(time.Second)
	n := 0
	for {
		if ok, _ := b.Allow(); !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d tokens after one second at 5/s, want 5", n)
	}
	// Without a burst, one second's worth.
	b = NewBucket(0.5, 0, clk.Now)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("first request refused")
	}
	if ok, wait := b.Allow(); ok || wait != 2*time.Second {
		t.Fatalf("at 0.5/s the second request: ok=%v wait=%v, want a 2s wait", ok, wait)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {2500 * time.Millisecond, 3}, {30 * time.Second, 30},
	} {
		if got := RetryAfterSeconds(tc.d); got != tc.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}
