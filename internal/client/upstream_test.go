package client

import (
	"strings"
	"testing"
	"time"
)

func TestUpstreamProtocolValidation(t *testing.T) {
	good := []TunnelConfig{
		{Proto: "http", Addr: "3000"},
		{Proto: "http", Addr: "3000", UpstreamProtocol: "http1"},
		{Proto: "http", Addr: "3000", UpstreamProtocol: "h2c"},
		{Proto: "http", Addr: "http://127.0.0.1:50051", UpstreamProtocol: "h2c"},
		{Proto: "http", Addr: "https://localhost:50051", UpstreamProtocol: "http2"},
		{Proto: "http", Addr: "https://localhost:50051", UpstreamProtocol: "auto"},
		{Proto: "http", Addr: "3000", UpstreamProtocol: "auto"}, // HTTP/1.1: nothing to negotiate
	}
	for _, c := range good {
		if err := c.validate(); err != nil {
			t.Errorf("%s upstream %q: %v", c.Addr, c.UpstreamProtocol, err)
		}
	}
	bad := []struct {
		c    TunnelConfig
		want string
	}{
		{TunnelConfig{Proto: "http", Addr: "3000", UpstreamProtocol: "h3"}, `upstream_protocol "h3": want http1, http2, h2c or auto`},
		{TunnelConfig{Proto: "http", Addr: "3000", UpstreamProtocol: "HTTP2"}, `upstream_protocol "HTTP2"`},
		{TunnelConfig{Proto: "http", Addr: "3000", UpstreamProtocol: "http2"}, "needs an https:// target"},
		{TunnelConfig{Proto: "http", Addr: "https://localhost:8443", UpstreamProtocol: "h2c"}, "needs an http:// target"},
		{TunnelConfig{Proto: "tcp", Addr: "5432", UpstreamProtocol: "h2c"}, "upstream_protocol is for http tunnels"},
	}
	for _, tc := range bad {
		err := tc.c.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s upstream %q: %v, want an error with %q", tc.c.Addr, tc.c.UpstreamProtocol, err, tc.want)
		}
	}
}

func TestGRPCTimeoutParse(t *testing.T) {
	for in, want := range map[string]time.Duration{"1S": time.Second, "500m": 500 * time.Millisecond, "4999132u": 4999132 * time.Microsecond, "2H": 2 * time.Hour, "7n": 7} {
		if got, ok := grpcTimeout(in); !ok || got != want {
			t.Errorf("grpcTimeout(%q) = %v %v, want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "S", "1", "1x", "-1S", "123456789S", "1.5S"} {
		if got, ok := grpcTimeout(in); ok {
			t.Errorf("grpcTimeout(%q) = %v, want refused", in, got)
		}
	}
}
