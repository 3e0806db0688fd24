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
