package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Linux routes all of 127.0.0.0/8 to the loopback interface, and a socket
// may bind any address of it without configuration: that is how one
// machine plays visitors from many addresses. The legitimate load comes
// from 127.0.0.1; every attack has addresses of its own, so that the
// per-address limits an attack trips never touch the legitimate tunnel's
// visitors, and a later attack starts with clean per-address state.
var (
	stalledAddrs   = addrRange("127.0.1.1", 1)
	slowlorisAddrs = addrRange("127.0.3.1", 4) // 250 each, under the per-address cap
	headerAddrs    = addrRange("127.0.4.1", 1)
	handshakeAddrs = addrRange("127.0.6.1", 8)
	idleAddrs      = addrRange("127.0.0.2", 49) // 127.0.0.2-127.0.0.50
	h2Addrs        = addrRange("127.0.7.1", 1)
	guessAddrs     = addrRange("127.0.8.1", 4)
)

// addrRange is n consecutive addresses from first.
func addrRange(first string, n int) []netip.Addr {
	a := netip.MustParseAddr(first)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// sprayAddr is the i-th of the address spray's sources: 127.1.0.1 on,
// skipping the .0 and .255 of each /24 (some stacks treat them
// specially), so 254 a /24 and 16.6 million in all.
func sprayAddr(i int) netip.Addr {
	c := i%254 + 1
	i /= 254
	b := i % 256
	i /= 256
	return netip.AddrFrom4([4]byte{127, byte(1 + i%254), byte(b), byte(c)})
}

// guessSprayAddr is the i-th of the password spray's sources, one
// address each from 127.200.0.1 on (outside sprayAddr's range).
func guessSprayAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(200 + i/(256*254)%50), byte(i / 254 % 256), byte(i%254 + 1)})
}

// dialFrom connects to addr from the source address src (any port).
func dialFrom(ctx context.Context, src netip.Addr, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	return c, nil
}
