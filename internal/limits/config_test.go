package limits

import (
	"reflect"
	"strings"
	"testing"

	"github.com/porthole/porthole/internal/config"
)

// TestConfigKeys decodes every [limits] key by the name operators write
// (and docs/limits.md documents); an unknown key is rejected.
func TestConfigKeys(t *testing.T) {
	var file struct {
		Limits Config `toml:"limits"`
	}
	src := `
[limits]
requests_per_second = 50
burst = 100
bandwidth_bytes_per_second = 10485760
max_tunnels_per_user = 10
max_sessions_per_user = 3
max_connections_per_tunnel = 200
max_streams_per_session = 1000
visitor_connections_per_ip = 64
max_visitor_connections = 5000
visitor_requests_per_second_per_ip = 100
visitor_burst_per_ip = 200
handshakes_per_second_per_ip = 2
handshake_burst_per_ip = 10
control_messages_per_second = 20
control_burst = 50
max_tunnels = 10000
basic_auth_failures_per_second_per_ip = 0.5
basic_auth_failure_burst_per_ip = 5
`
	if err := config.Decode("server.toml", []byte(src), &file); err != nil {
		t.Fatal(err)
	}
	want := Config{
		RequestsPerSecond: 50, Burst: 100, BandwidthBytesPerSecond: 10 << 20, MaxTunnelsPerUser: 10,
		MaxSessionsPerUser: 3, MaxConnectionsPerTunnel: 200, MaxStreamsPerSession: 1000,
		VisitorConnectionsPerIP: 64, MaxVisitorConnections: 5000, VisitorRequestsPerIP: 100, VisitorBurstPerIP: 200,
		HandshakesPerIP: 2, HandshakeBurstPerIP: 10, ControlMessagesPerSecond: 20, ControlBurst: 50,
		MaxTunnels: 10000, BasicAuthFailuresPerSecondPerIP: 0.5, BasicAuthFailureBurstPerIP: 5,
	}
	if file.Limits != want {
		t.Fatalf("decoded %+v\nwant    %+v", file.Limits, want)
	}
	if err := file.Limits.Validate(); err != nil {
		t.Fatal(err)
	}
	// Every field has a key, and the test above sets every one.
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		key := rt.Field(i).Tag.Get("toml")
		if key == "" || !strings.Contains(src, "\n"+key+" = ") {
			t.Errorf("field %s (key %q) is not covered", rt.Field(i).Name, key)
		}
	}
	err := config.Decode("server.toml", []byte("[limits]\nrequests_per_secnod = 5\n"), &file)
	if err == nil || !strings.Contains(err.Error(), "requests_per_secnod") {
		t.Fatalf("a misspelt key: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("no limits at all: %v", err)
	}
	bad := Config{RequestsPerSecond: -1, Burst: -1, MaxTunnels: -3, ControlMessagesPerSecond: -0.5}
	err := bad.Validate()
	if err == nil {
		t.Fatal("negative values accepted")
	}
	for _, k := range []string{"requests_per_second", "burst", "max_tunnels", "control_messages_per_second"} {
		if !strings.Contains(err.Error(), "limits."+k) {
			t.Errorf("error does not name %s: %v", k, err)
		}
	}
	if err := (&Config{BandwidthBytesPerSecond: 100}).Validate(); err == nil {
		t.Fatal("100 bytes/s accepted")
	}
	if err := (&Config{BandwidthBytesPerSecond: 1024}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFor(t *testing.T) {
	base := Config{RequestsPerSecond: 10, Burst: 20, BandwidthBytesPerSecond: 1 << 20, MaxTunnelsPerUser: 2,
		MaxSessionsPerUser: 1, MaxConnectionsPerTunnel: 5, MaxTunnels: 100, VisitorRequestsPerIP: 7}
	if got := base.For(nil); got != base {
		t.Fatalf("no overrides changed %+v", got)
	}
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	i64 := func(v int64) *int64 { return &v }
	got := base.For(&Overrides{RequestsPerSecond: f(0), Burst: i(500), BandwidthBytesPerSecond: i64(50 << 20),
		MaxTunnelsPerUser: i(7), MaxSessionsPerUser: i(0), MaxConnectionsPerTunnel: i(9)})
	want := Config{RequestsPerSecond: 0, Burst: 500, BandwidthBytesPerSecond: 50 << 20, MaxTunnelsPerUser: 7,
		MaxSessionsPerUser: 0, MaxConnectionsPerTunnel: 9, MaxTunnels: 100, VisitorRequestsPerIP: 7}
	if got != want {
		t.Fatalf("For = %+v\nwant  %+v", got, want)
	}
	// Only the fields set change.
	if got := base.For(&Overrides{Burst: i(3)}); got.Burst != 3 || got.RequestsPerSecond != 10 || got.MaxTunnelsPerUser != 2 {
		t.Fatalf("partial override: %+v", got)
	}
}

func TestRequestBurst(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want int
	}{
		{Config{RequestsPerSecond: 50, Burst: 100}, 100},
		{Config{RequestsPerSecond: 50}, 50},
		{Config{RequestsPerSecond: 0.2}, 1},
		{Config{RequestsPerSecond: 2.5}, 3},
	} {
		if got := tc.c.RequestBurst(); got != tc.want {
			t.Errorf("%+v: RequestBurst = %d, want %d", tc.c, got, tc.want)
		}
	}
}
