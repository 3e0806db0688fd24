package limits

import (
	"net/netip"
	"testing"
	"time"
)

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1":    "2001:db8:1:2::",
		"fe80::1%eth0":            "fe80::",
		"::1":                     "::",
		"2001:db8:1:3::1":         "2001:db8:1:3::",
		"2001:0db8:0001:0002::99": "2001:db8:1:2::",
	} {
		if got := AddrKey(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("AddrKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestIPTableIPv6Per64: addresses in one /64 share a budget (requests and
// connections); another /64 has its own. An attacker holding a /64 gets
// one address's worth, not 2^64.
func TestIPTableIPv6Per64(t *testing.T) {
	clk := newFakeClock()
	a1 := netip.MustParseAddr("2001:db8:0:1::1")
	a2 := netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:ffff")
	other := netip.MustParseAddr("2001:db8:0:2::1")

	rt := NewIPTable(1, 3, 0, clk.Now)
	for i := range 3 {
		a := a1
		if i%2 == 1 {
			a = a2
		}
		if ok, _ := rt.Allow(a); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if ok, _ := rt.Allow(a2); ok {
		t.Fatal("a second address in the same /64 got a fresh burst")
	}
	if ok, _ := rt.Allow(netip.MustParseAddr("2001:db8:0:1:1234::9")); ok {
		t.Fatal("a third address in the same /64 got a fresh burst")
	}
	if ok, _ := rt.Allow(other); !ok {
		t.Fatal("another /64 was refused")
	}

	ct := NewIPTable(0, 0, 2, clk.Now)
	if !ct.Acquire(a1) || !ct.Acquire(a2) {
		t.Fatal("connections within the cap refused")
	}
	if ct.Acquire(netip.MustParseAddr("2001:db8:0:1::77")) {
		t.Fatal("a third connection from the same /64 admitted over a cap of 2")
	}
	if !ct.Acquire(other) {
		t.Fatal("another /64 refused")
	}
	ct.Release(a2) // released under any address of the /64
	if !ct.Acquire(netip.MustParseAddr("2001:db8:0:1::77")) {
		t.Fatal("a released connection was not given back to the /64")
	}
	if ct.Len() != 2 {
		t.Fatalf("Len = %d, want one entry per /64", ct.Len())
	}
}

// TestIPTableReserve: a reservation takes a token at once, so concurrent
// attempts cannot exceed the burst; a refund gives it back.
func TestIPTableReserve(t *testing.T) {
	clk := newFakeClock()
	tb := NewIPTable(1, 3, 0, clk.Now)
	a := addr(1)
	var dones []func(bool)
	for i := range 3 {
		ok, _, done := tb.Reserve(a)
		if !ok {
			t.Fatalf("attempt %d refused within the burst", i)
		}
		dones = append(dones, done)
	}
	ok, wait, _ := tb.Reserve(a)
	if ok || wait <= 0 {
		t.Fatalf("fourth attempt in flight: ok=%v wait=%v, want refused with a wait", ok, wait)
	}
	dones[0](false) // succeeded: costs nothing
	if ok, _, _ := tb.Reserve(a); !ok {
		t.Fatal("an attempt that succeeded still holds its token")
	}
	dones[1](true)
	dones[2](true)
	// Two failures took two tokens, one attempt is in flight: none left.
	if ok, _, _ := tb.Reserve(a); ok {
		t.Fatal("more attempts than the burst")
	}
	clk.Advance(time.Second)
	if ok, _, _ := tb.Reserve(a); !ok {
		t.Fatal("the bucket did not refill")
	}
	var off *IPTable
	if ok, _, done := off.Reserve(a); !ok || done == nil {
		t.Fatal("a nil table must admit and return a usable done")
	}
}

// TestIPTableReserveSuccessesFree: with the real clock, attempts that
// succeed never use up an address's tries, however many (a browser sends
// its password with every request of a page).
func TestIPTableReserveSuccessesFree(t *testing.T) {
	tb := NewIPTable(1, 3, 0, nil)
	a := addr(2)
	for i := range 100 {
		ok, _, done := tb.Reserve(a)
		if !ok {
			t.Fatalf("successful attempt %d refused", i)
		}
		time.Sleep(time.Millisecond) // the check takes time
		done(false)
	}
	for i := range 3 {
		ok, _, done := tb.Reserve(a)
		if !ok {
			t.Fatalf("failure %d refused within the burst", i)
		}
		done(true)
	}
	if ok, wait, _ := tb.Reserve(a); ok || wait <= 0 {
		t.Fatalf("after the burst of failures: ok=%v wait=%v, want refused", ok, wait)
	}
}

// TestIPTableFullShardWorkBounded fills tables of different sizes to
// their cap with entries that cannot be dropped (each holds a
// connection), then sends new addresses at them. The entries each request
// looks at to make room stay under a constant, whatever the table size.
func TestIPTableFullShardWorkBounded(t *testing.T) {
	for _, size := range []int{640, 64_000} {
		clk := newFakeClock()
		tb := NewIPTable(0, 0, 1, clk.Now)
		tb.SetBounds(size, time.Minute)
		for i := 0; tb.Len() < size; i++ {
			tb.Acquire(addr(i))
		}
		before := tb.scanned.Load()
		const newcomers = 5000
		for i := range newcomers {
			clk.Advance(time.Second) // old code rescanned a full shard once a second
			tb.Acquire(addr(1_000_000 + i))
		}
		per := float64(tb.scanned.Load()-before) / newcomers
		if per > evictSample {
			t.Fatalf("table of %d: %.1f entries looked at per new address, want at most %d", size, per, evictSample)
		}
		if tb.Len() > size {
			t.Fatalf("table of %d holds %d entries", size, tb.Len())
		}
	}
	// Spent entries (no connection, full bucket) make room at once.
	clk := newFakeClock()
	tb := NewIPTable(1, 2, 1, clk.Now)
	tb.SetBounds(64, time.Hour)
	for i := range 64 * 50 {
		tb.Acquire(addr(i))
		tb.Release(addr(i))
	}
	if n := tb.Len(); n > 64 {
		t.Fatalf("Len = %d over a bound of 64", n)
	}
	a := addr(999_999)
	tb.Allow(a)
	if _, own := tb.shard(a).m[a]; !own {
		t.Fatal("a new address was put in the overflow although its shard held only spent entries")
	}
}

// TestIPTableSpray100k: 100,000 distinct addresses (IPv4 and IPv6 /64s)
// fail a password at a table with its default bound, then another
// 100,000 with a bound of 6,400: the table never holds more than its
// bound, each attempt looks at no more than evictSample entries to make
// room, and a /64 seen through many of its addresses is one entry.
func TestIPTableSpray100k(t *testing.T) {
	for _, bound := range []int{0, 6400} {
		clk := newFakeClock()
		tb := NewIPTable(1, 10, 0, clk.Now)
		if bound > 0 {
			tb.SetBounds(bound, time.Minute)
		}
		limit := tb.maxEntries
		const spray = 100_000
		before := tb.scanned.Load()
		for i := range spray {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			if i%2 == 1 {
				ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i >> 16), byte(i >> 8), byte(i), 0xaa, 0xbb, 0, 0, 0, 0, 0, byte(i)})
			}
			ok, _, done := tb.Reserve(ip)
			done(ok)
			if i%10_000 == 0 && tb.Len() > limit {
				t.Fatalf("bound %d: after %d addresses the table holds %d", limit, i+1, tb.Len())
			}
		}
		if n := tb.Len(); n > limit {
			t.Fatalf("bound %d: the table holds %d entries", limit, n)
		}
		if per := float64(tb.scanned.Load()-before) / spray; per > evictSample {
			t.Fatalf("bound %d: %.2f entries looked at per attempt, want at most %d", limit, per, evictSample)
		}
		t.Logf("bound %d: %d entries, %.2f looked at per attempt", limit, tb.Len(), float64(tb.scanned.Load()-before)/spray)
	}
	// Many addresses of one /64: one entry, one budget.
	tb := NewIPTable(1, 10, 0, newFakeClock().Now)
	refused := 0
	for i := range 1000 {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 7, byte(i >> 8), byte(i), 1, 2, 3, 4, 5, 6})
		ok, _, done := tb.Reserve(ip)
		if !ok {
			refused++
		}
		done(ok)
	}
	if tb.Len() != 1 || refused != 990 {
		t.Fatalf("1000 addresses of one /64: %d entries, %d refused; want 1 entry and all but 10 refused", tb.Len(), refused)
	}
}
