package limits

import (
	"errors"
	"fmt"
)

// Config is the [limits] table of the server configuration. A zero value
// means no limit, as the operator contract says of unset keys; the few
// limits that keep one visitor or client from exhausting the process
// (Defaults) are on unless a config sets them to 0.
type Config struct {
	// RequestsPerSecond and Burst: token bucket per tunnel; excess requests
	// get 429 with Retry-After and never reach the client.
	RequestsPerSecond float64 `toml:"requests_per_second"`
	Burst             int     `toml:"burst"`
	// BandwidthBytesPerSecond per user, each direction: shaped, not cut.
	BandwidthBytesPerSecond int64 `toml:"bandwidth_bytes_per_second"`
	// MaxTunnelsPerUser and MaxSessionsPerUser: concurrent, per user (per
	// session for anonymous clients of a --no-auth server).
	MaxTunnelsPerUser  int `toml:"max_tunnels_per_user"`
	MaxSessionsPerUser int `toml:"max_sessions_per_user"`
	// MaxConnectionsPerTunnel: concurrent visitor requests (HTTP) or
	// connections (TCP) per tunnel.
	MaxConnectionsPerTunnel int `toml:"max_connections_per_tunnel"`
	// MaxStreamsPerSession: open streams on one client session.
	MaxStreamsPerSession int `toml:"max_streams_per_session"`
	// Per visitor address on the public listeners.
	VisitorConnectionsPerIP int `toml:"visitor_connections_per_ip"`
	// MaxVisitorConnections: open visitor connections on all public
	// listeners together (HTTP, HTTPS, TCP tunnel ports). An HTTP/2
	// request in progress counts as one more, per address and in total.
	MaxVisitorConnections int     `toml:"max_visitor_connections"`
	VisitorRequestsPerIP  float64 `toml:"visitor_requests_per_second_per_ip"`
	VisitorBurstPerIP     int     `toml:"visitor_burst_per_ip"`
	// On the tunnel listener, per source address.
	HandshakesPerIP     float64 `toml:"handshakes_per_second_per_ip"`
	HandshakeBurstPerIP int     `toml:"handshake_burst_per_ip"`
	// Wrong --basic-auth passwords per visitor address (IPv6: per /64):
	// a burst, then this many a second; past them 429, whatever the
	// address sends. 0 turns the throttle off (not recommended).
	BasicAuthFailuresPerSecondPerIP float64 `toml:"basic_auth_failures_per_second_per_ip"`
	BasicAuthFailureBurstPerIP      int     `toml:"basic_auth_failure_burst_per_ip"`
	// ControlMessagesPerSecond per session (binds, pings, ...).
	ControlMessagesPerSecond float64 `toml:"control_messages_per_second"`
	ControlBurst             int     `toml:"control_burst"`
	// MaxTunnels in the whole server.
	MaxTunnels int `toml:"max_tunnels"`
}

// Validate rejects negative values and bursts without rates.
func (c *Config) Validate() error {
	var errs []error
	neg := func(name string, v float64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("limits.%s may not be negative", name))
		}
	}
	neg("requests_per_second", c.RequestsPerSecond)
	neg("burst", float64(c.Burst))
	neg("bandwidth_bytes_per_second", float64(c.BandwidthBytesPerSecond))
	neg("max_tunnels_per_user", float64(c.MaxTunnelsPerUser))
	neg("max_sessions_per_user", float64(c.MaxSessionsPerUser))
	neg("max_connections_per_tunnel", float64(c.MaxConnectionsPerTunnel))
	neg("max_streams_per_session", float64(c.MaxStreamsPerSession))
	neg("visitor_connections_per_ip", float64(c.VisitorConnectionsPerIP))
	neg("max_visitor_connections", float64(c.MaxVisitorConnections))
	neg("visitor_requests_per_second_per_ip", c.VisitorRequestsPerIP)
	neg("visitor_burst_per_ip", float64(c.VisitorBurstPerIP))
	neg("handshakes_per_second_per_ip", c.HandshakesPerIP)
	neg("handshake_burst_per_ip", float64(c.HandshakeBurstPerIP))
	neg("basic_auth_failures_per_second_per_ip", c.BasicAuthFailuresPerSecondPerIP)
	neg("basic_auth_failure_burst_per_ip", float64(c.BasicAuthFailureBurstPerIP))
	neg("control_messages_per_second", c.ControlMessagesPerSecond)
	neg("control_burst", float64(c.ControlBurst))
	neg("max_tunnels", float64(c.MaxTunnels))
	if c.BandwidthBytesPerSecond > 0 && c.BandwidthBytesPerSecond < 1024 {
		errs = append(errs, errors.New("limits.bandwidth_bytes_per_second below 1024 would make tunnels unusable"))
	}
	return errors.Join(errs...)
}

// Defaults are the limits that are on without a config file: each bounds
// what one visitor address, or one client session, can take of the
// process. Every other key is off until set. docs/limits.md explains the
// values.
func Defaults() Config {
	return Config{
		MaxStreamsPerSession:    1000,
		VisitorConnectionsPerIP: 256,
		MaxVisitorConnections:   10000,
		// A client sends a bind per tunnel at connect and about two
		// messages a heartbeat after that; a flood is cut off.
		ControlMessagesPerSecond: 20,
		ControlBurst:             200,
		// A password is no protection if it can be guessed at full
		// speed: ten tries at once, then one a second.
		BasicAuthFailuresPerSecondPerIP: 1,
		BasicAuthFailureBurstPerIP:      10,
	}
}

// Overrides are one user's limits; a nil field takes the server default,
// and a zero value means no limit for this user.
type Overrides struct {
	RequestsPerSecond       *float64 `json:"requests_per_second,omitempty"`
	Burst                   *int     `json:"burst,omitempty"`
	BandwidthBytesPerSecond *int64   `json:"bandwidth_bytes_per_second,omitempty"`
	MaxTunnelsPerUser       *int     `json:"max_tunnels_per_user,omitempty"`
	MaxSessionsPerUser      *int     `json:"max_sessions_per_user,omitempty"`
	MaxConnectionsPerTunnel *int     `json:"max_connections_per_tunnel,omitempty"`
}

// For returns c with o's fields applied.
func (c Config) For(o *Overrides) Config {
	if o == nil {
		return c
	}
	if o.RequestsPerSecond != nil {
		c.RequestsPerSecond = *o.RequestsPerSecond
	}
	if o.Burst != nil {
		c.Burst = *o.Burst
	}
	if o.BandwidthBytesPerSecond != nil {
		c.BandwidthBytesPerSecond = *o.BandwidthBytesPerSecond
	}
	if o.MaxTunnelsPerUser != nil {
		c.MaxTunnelsPerUser = *o.MaxTunnelsPerUser
	}
	if o.MaxSessionsPerUser != nil {
		c.MaxSessionsPerUser = *o.MaxSessionsPerUser
	}
	if o.MaxConnectionsPerTunnel != nil {
		c.MaxConnectionsPerTunnel = *o.MaxConnectionsPerTunnel
	}
	return c
}

// RequestBurst is the token bucket size for a per-tunnel rate: Burst, or
// the rate rounded up (one second's worth) when Burst is unset.
func (c Config) RequestBurst() int {
	if c.Burst > 0 {
		return c.Burst
	}
	return max(1, int(c.RequestsPerSecond+0.999))
}
