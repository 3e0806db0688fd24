package auth

import (
	"fmt"
	"testing"
	"time"
)

// TestThrottleIPv6Per64: failures from any address of one /64 count
// together; another /64 is not affected.
func TestThrottleIPv6Per64(t *testing.T) {
	th := newThrottle(1, 3)
	now := time.Now()
	for i := range 3 {
		th.failed(fmt.Sprintf("[2001:db8:0:1::%x]:4000", i+1), now)
	}
	if _, blocked := th.blocked("[2001:db8:0:1:dead:beef:0:1]:5000", now); !blocked {
		t.Fatal("a fresh address in a /64 that spent its failures is not blocked")
	}
	if _, blocked := th.blocked("[2001:db8:0:2::1]:4000", now); blocked {
		t.Fatal("another /64 is blocked")
	}
	if _, blocked := th.blocked("[::ffff:192.0.2.1]:1", now); blocked {
		t.Fatal("an IPv4 address is blocked")
	}
}

// TestThrottleFullTableWorkBounded fills the table to its cap with
// addresses that still owe failures, then sends failures from new
// addresses: each looks at a constant number of entries, whatever the
// table size, and the table stays bounded.
func TestThrottleFullTableWorkBounded(t *testing.T) {
	for _, size := range []int{100, 10_000} {
		th := newThrottle(1, 5)
		th.max = size
		now := time.Now()
		for i := range size {
			th.failed(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), now)
		}
		const newcomers = 2000
		for i := range newcomers {
			th.failed(fmt.Sprintf("172.16.%d.%d:1", i>>8&255, i&255), now.Add(time.Duration(i)*time.Millisecond))
		}
		if per := float64(th.scanned) / newcomers; per > evictSample {
			t.Fatalf("table of %d: %.1f entries looked at per failure, want at most %d", size, per, evictSample)
		}
		if len(th.addr) > size {
			t.Fatalf("table of %d holds %d entries", size, len(th.addr))
		}
	}
}

// TestThrottleSpray100k: failed handshakes from 100,000 distinct
// addresses (IPv4 and IPv6 /64s) keep the table at its cap, and each
// failure looks at a bounded number of entries; many addresses of one
// /64 are one entry and share its budget.
func TestThrottleSpray100k(t *testing.T) {
	th := newThrottle(60, 5)
	now := time.Now()
	const spray = 100_000
	for i := range spray {
		remote := fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
		if i%2 == 1 {
			remote = fmt.Sprintf("[2001:db8:%x:%x::1]:1", i>>16, i&0xffff)
		}
		th.failed(remote, now)
		if i%10_000 == 0 && len(th.addr) > th.max {
			t.Fatalf("after %d addresses the table holds %d, over %d", i+1, len(th.addr), th.max)
		}
	}
	if len(th.addr) > th.max {
		t.Fatalf("the table holds %d entries, over %d", len(th.addr), th.max)
	}
	if per := float64(th.scanned) / spray; per > evictSample {
		t.Fatalf("%.2f entries looked at per failure, want at most %d", per, evictSample)
	}
	one := newThrottle(60, 5)
	for i := range 1000 {
		one.failed(fmt.Sprintf("[2001:db8:0:7:%x::%x]:1", i, i), now)
	}
	if len(one.addr) != 1 {
		t.Fatalf("1000 addresses of one /64 are %d entries", len(one.addr))
	}
	if _, blocked := one.blocked("[2001:db8:0:7:ffff::1]:9", now); !blocked {
		t.Fatal("a fresh address of a /64 that failed 1000 times is not blocked")
	}
}
