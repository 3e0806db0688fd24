package client

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/config"
)

func TestParseTarget(t *testing.T) {
	good := []struct {
		kind, in string
		want     Target
	}{
		{"http", "3000", Target{"http", "localhost:3000"}},
		{"http", " 3000 ", Target{"http", "localhost:3000"}},
		{"http", "127.0.0.1:8080", Target{"http", "127.0.0.1:8080"}},
		{"http", ":8080", Target{"http", "localhost:8080"}},
		{"http", "[::1]:8080", Target{"http", "[::1]:8080"}},
		{"http", "http://app.internal:9000", Target{"http", "app.internal:9000"}},
		{"http", "http://app.internal:9000/", Target{"http", "app.internal:9000"}},
		{"http", "https://localhost:8443", Target{"https", "localhost:8443"}},
		{"http", "https://example.test", Target{"https", "example.test:443"}},
		{"http", "http://example.test", Target{"http", "example.test:80"}},
		{"tcp", "5432", Target{"tcp", "localhost:5432"}},
		{"tcp", "db:5432", Target{"tcp", "db:5432"}},
		{"tcp", "tcp://db:5432", Target{"tcp", "db:5432"}},
	}
	for _, tc := range good {
		got, err := ParseTarget(tc.kind, tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTarget(%s, %q) = %v, %v; want %v", tc.kind, tc.in, got, err, tc.want)
		}
	}
	bad := []struct{ kind, in, want string }{
		{"http", "", "empty"},
		{"http", "0", "out of range"},
		{"http", "70000", "out of range"},
		{"http", "localhost", "not PORT, HOST:PORT"},
		{"http", "host:http", "not a number"},
		{"http", "ftp://host:21", "does not fit"},
		{"tcp", "http://host:80", "does not fit"},
		{"http", "http://host:80/path", "only scheme, host and port"},
		{"http", "http://host:80/?q=1", "only scheme, host and port"},
		{"http", "http://host:99999", "not a number in 1-65535"},
	}
	for _, tc := range bad {
		_, err := ParseTarget(tc.kind, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTarget(%s, %q) = %v, want an error mentioning %q", tc.kind, tc.in, err, tc.want)
		}
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := Backoff{Base: config.Duration(100 * time.Millisecond), Max: config.Duration(2 * time.Second)}
	for n := 0; n < 80; n++ {
		ceiling := min(100*time.Millisecond<<min(n, 30), 2*time.Second)
		distinct := make(map[time.Duration]bool)
		for range 200 {
			d := backoffDelay(b, n)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %s outside [0, %s]", n, d, ceiling)
			}
			distinct[d] = true
		}
		if len(distinct) < 100 {
			t.Fatalf("attempt %d: only %d distinct delays in 200: not jittered", n, len(distinct))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Servers = []string{"ws://localhost:8081", "wss://tunnel.example.com"}
	ok.Tunnels = map[string]TunnelConfig{"web": {Proto: "http", Addr: "3000", Subdomain: "web"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no server":       func(c *Config) { c.Servers = nil },
		"http server URL": func(c *Config) { c.Servers = []string{"http://localhost:8081"} },
		"comma-joined servers": func(c *Config) {
			c.Servers = []string{"ws://127.0.0.1:8081,ws://127.0.0.2:8081"}
		},
		"server port not a number": func(c *Config) { c.Servers = []string{"ws://localhost:http"} },
		"server port out of range": func(c *Config) { c.Servers = []string{"ws://localhost:70000"} },
		"server without a host":    func(c *Config) { c.Servers = []string{"ws://:8081"} },
		"cert without key":         func(c *Config) { c.Cert = "c.pem" },
		"zero backoff":             func(c *Config) { c.Reconnect.Base = 0 },
		"max below base":           func(c *Config) { c.Reconnect.Max = config.Duration(time.Millisecond) },
		"bad tunnel proto":         func(c *Config) { c.Tunnels = map[string]TunnelConfig{"x": {Proto: "udp", Addr: "1"}} },
		"bad tunnel target":        func(c *Config) { c.Tunnels = map[string]TunnelConfig{"x": {Proto: "http", Addr: "nope"}} },
		"bad subdomain": func(c *Config) {
			c.Tunnels = map[string]TunnelConfig{"x": {Proto: "http", Addr: "1", Subdomain: "a_b"}}
		},
		"tcp with subdomain":    func(c *Config) { c.Tunnels = map[string]TunnelConfig{"x": {Proto: "tcp", Addr: "1", Subdomain: "ab"}} },
		"http with remote port": func(c *Config) { c.Tunnels = map[string]TunnelConfig{"x": {Proto: "http", Addr: "1", RemotePort: 2}} },
	} {
		c := ok
		c.Tunnels = map[string]TunnelConfig{}
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}

// TestLocalDialerBothFamilies: "localhost" reaches an app that listens on
// 127.0.0.1 only, and one on ::1 only.
func TestLocalDialerBothFamilies(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("skipping %s: %v", addr, err)
			continue
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		d := newLocalDialer()
		c, err := d.DialContext(context.Background(), "tcp", "localhost:"+port)
		if err != nil {
			t.Fatalf("localhost:%s with the app on %s: %v", port, addr, err)
		}
		buf := make([]byte, 2)
		c.Read(buf)
		c.Close()
		ln.Close()
		if string(buf) != "hi" {
			t.Fatalf("read %q", buf)
		}
		if d.preferV6.Load() != strings.HasPrefix(addr, "[") {
			t.Errorf("after reaching %s, preferV6 = %v", addr, d.preferV6.Load())
		}
	}
}
