package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
)

// FuzzServerConfig decodes arbitrary bytes as the server's TOML file over
// the defaults, as `porthole server --config` and `porthole config check`
// do. Decoding must fail with a *config.Error or succeed, Validate must
// not panic, and a config that passes it must survive writing out and
// reading back: valid again, and the same.
func FuzzServerConfig(f *testing.F) {
	f.Add([]byte(`domain = "tunnel.example.com"
http_addr = ":80"
https_addr = ":443"
tunnel_addr = ":8081"
tls_cert = "/etc/porthole/wildcard.pem"
tls_key = "/etc/porthole/wildcard.key"
tcp_ports = "20000-20010"

[subdomains]
strategy = "random"
reserved = ["www", "api"]

[http]
read_header_timeout = "10s"
idle_timeout = "2m"
max_header_bytes = 65536
max_header_fields = 500

[tunnel]
grace_period = "60s"
heartbeat = "8s"
compression = "off"

[limits]
requests_per_second = 50
burst = 100
max_tunnels_per_user = 10
visitor_connections_per_ip = 64
`))
	f.Add([]byte("domain = \"Example.COM.\"\n"))
	f.Add([]byte("[tls.acme]\nemail = \"ops@example.com\"\n"))
	f.Add([]byte("[auth]\nfailed_auth_burst = 5\n"))
	f.Add([]byte("[metrics]\npprof = true\n"))
	f.Add([]byte("[http]\nmax_header_bytes = 10\n"))
	f.Add([]byte("[tunnel]\nheartbeat = \"1h\"\n"))
	f.Add([]byte("tcp_ports = \"9-1\"\n"))
	f.Add([]byte("no_such_key = true\n"))
	f.Add([]byte("[limits]\nburst = -1\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := server.DefaultConfig()
		if err := config.Decode("server.toml", data, &cfg); err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Msg == "" || ce.Line < 0 || ce.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("decode error %#v", err)
			}
			return
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := toml.Marshal(cfg)
		if err != nil {
			t.Fatalf("a valid config does not encode: %v", err)
		}
		again := server.DefaultConfig()
		if err := config.Decode("again.toml", out, &again); err != nil {
			t.Fatalf("a valid config, written out, does not read back: %v\n%s", err, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("a valid config, written out and read back, is invalid: %v\n%s", err, out)
		}
		if out2, _ := toml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("read back differently:\n%s\n---\n%s", out, out2)
		}
	})
}

// FuzzParsePortRange: tcp_ports either is refused or is a range of ports
// 1-65535, low to high, that prints and parses back to itself.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"20000-20999", "1-65535", "80-80", " 1 - 2 ", "0-10", "10-9", "1-65536", "-", "a-b", "+1-+2", "1--2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := server.ParsePortRange(s)
		if err != nil {
			return
		}
		if lo < 1 || hi > 65535 || lo > hi {
			t.Fatalf("%q gave %d-%d", s, lo, hi)
		}
		lo2, hi2, err := server.ParsePortRange(fmt.Sprintf("%d-%d", lo, hi))
		if err != nil || lo2 != lo || hi2 != hi {
			t.Fatalf("%d-%d parses to %d-%d, %v", lo, hi, lo2, hi2, err)
		}
	})
}
