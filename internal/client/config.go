package client

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/names"
)

// Config is the client's flags and TOML file.
type Config struct {
	// Servers are tunnel listener URLs, tried in order.
	Servers     []string `toml:"servers"`
	APIKey      string   `toml:"api_key"`
	Token       string   `toml:"token"`
	Cert        string   `toml:"cert"`
	Key         string   `toml:"key"`
	CAFile      string   `toml:"ca_file"`
	InspectAddr string   `toml:"inspect_addr"`
	// InsecureSkipVerify turns off verification of a wss:// server's
	// certificate. Never the default; warned about on every start.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// InsecurePlaintext allows sending an API key or token over ws:// to a
	// server that is not on loopback, where anyone on the path can read
	// it. Never the default; warned about on every start.
	InsecurePlaintext bool `toml:"insecure_plaintext"`
	// ServerPins accept a wss:// server by its key instead of its chain:
	// "sha256:" and the SPKI digest in base64 or hex (self-signed servers).
	ServerPins []string `toml:"server_pins"`

	Reconnect Backoff `toml:"reconnect"`
	// HandshakeTimeout bounds connect, TLS, WebSocket and hello.
	HandshakeTimeout config.Duration `toml:"handshake_timeout"`
	// StreamWindow is the multiplexer's per-stream receive window in
	// bytes (0: the default, 4 MiB); it bounds an upload stream's speed
	// over a long round trip.
	StreamWindow int `toml:"stream_window"`
	// Compress asks the server to compress the session's traffic; a
	// server that refuses leaves it uncompressed (docs/compression.md).
	Compress bool `toml:"compress"`
	// Links is how many of Servers the client keeps a session to at once
	// (0 or 1: one; more: that many, each to a different server).
	Links int `toml:"links"`

	Tunnels map[string]TunnelConfig `toml:"tunnels"`
}

// Backoff configures reconnection: exponential with full jitter.
type Backoff struct {
	Base config.Duration `toml:"base"`
	Max  config.Duration `toml:"max"`
	// ResetAfter: a session that stayed up this long resets the backoff.
	ResetAfter config.Duration `toml:"reset_after"`
}

// TunnelConfig is one [tunnels.NAME] table.
type TunnelConfig struct {
	Proto      string `toml:"proto"`
	Addr       string `toml:"addr"`
	Subdomain  string `toml:"subdomain"`
	Hostname   string `toml:"hostname"`
	RemotePort int    `toml:"remote_port"`
	// HostHeader: empty keeps the visitor's Host, "rewrite" sends the
	// target's host:port, anything else is sent as is.
	HostHeader string `toml:"host_header"`
	// InsecureSkipVerify accepts any certificate from an https:// local
	// target (self-signed development servers).
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// HTTPSRedirect asks the server to redirect plain-HTTP visitors to
	// https; HSTSMaxAge (seconds) to send Strict-Transport-Security.
	HTTPSRedirect bool  `toml:"https_redirect"`
	HSTSMaxAge    int64 `toml:"hsts_max_age"`

	// Visitor access control, enforced by the server: "user:password"
	// entries, networks, and "Name: value" headers a visitor must send.
	BasicAuth []string `toml:"basic_auth"`
	// BasicAuthForward passes the visitor's Authorization header on to
	// the local app; by default the server removes it once it matched.
	BasicAuthForward bool     `toml:"basic_auth_forward"`
	AllowCIDR        []string `toml:"allow_cidr"`
	DenyCIDR         []string `toml:"deny_cidr"`
	RequireHeader    []string `toml:"require_header"`
	// Header rules the server applies: "Name: value" to add, names to
	// remove.
	RequestHeaderAdd     []string `toml:"request_header_add"`
	RequestHeaderRemove  []string `toml:"request_header_remove"`
	ResponseHeaderAdd    []string `toml:"response_header_add"`
	ResponseHeaderRemove []string `toml:"response_header_remove"`

	// Pool joins the user's other clients serving the same name;
	// PoolStrategy is "round-robin" (default) or "least-streams".
	Pool         bool   `toml:"pool"`
	PoolStrategy string `toml:"pool_strategy"`
	// HealthPath, when set, is requested from the local app every
	// HealthInterval; while it fails, the server sends no visitors here.
	HealthPath     string          `toml:"health_path"`
	HealthInterval config.Duration `toml:"health_interval"`

	// ProxyProtocol (tcp tunnels), "v2" or "v1", sends a PROXY protocol
	// header to the local app before the visitor's bytes, so that it
	// sees the visitor's address (docs/tcp.md).
	ProxyProtocol string `toml:"proxy_protocol"`

	// UpstreamProtocol (http tunnels) is what the client speaks to the
	// local app: "http1" (default), "http2", "h2c" or "auto"
	// (upstream.go, docs/grpc.md).
	UpstreamProtocol string `toml:"upstream_protocol"`
}

// DefaultConfig returns the client defaults.
func DefaultConfig() Config {
	return Config{
		InspectAddr: "127.0.0.1:4040",
		Reconnect: Backoff{
			Base:       config.Duration(500 * time.Millisecond),
			Max:        config.Duration(30 * time.Second),
			ResetAfter: config.Duration(30 * time.Second),
		},
		HandshakeTimeout: config.Duration(15 * time.Second),
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Servers) == 0 {
		bad("no server: pass --server ws://HOST:PORT or set PORTHOLE_SERVER")
	}
	for _, s := range c.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			bad("server %q is not a ws:// or wss:// URL", s)
			continue
		}
		if strings.Contains(s, ",") {
			bad("server %q: give each server its own --server (or its own entry in servers)", s)
			continue
		}
		if p := u.Port(); u.Hostname() == "" || (p != "" && !validPort(p)) || strings.HasSuffix(u.Host, ":") {
			bad("server %q: %q is not HOST or HOST:PORT", s, u.Host)
			continue
		}
		if c.SendsCredential() && !c.InsecurePlaintext && PlaintextOffHost(s) {
			bad("server %s: ws:// would send your %s in clear text to a machine other than this one, where anyone on the path can read and reuse it; use wss:// (a server with --tls-cert or ACME), or pass --insecure-plaintext to send it anyway", s, c.credentialName())
		}
	}
	if c.Links < 0 || c.Links > MaxLinks {
		bad("links %d: want 1 to %d", c.Links, MaxLinks)
	} else if n := distinct(c.Servers); c.Links > n && n > 0 {
		bad("--links %d needs at least %d different --server addresses, got %d: each link goes to a different server", c.Links, c.Links, n)
	}
	if (c.Cert == "") != (c.Key == "") {
		bad("--cert and --key must be given together")
	}
	if c.Reconnect.Base <= 0 || c.Reconnect.Max < c.Reconnect.Base {
		bad("reconnect: base must be positive and max at least base")
	}
	if c.StreamWindow != 0 && (c.StreamWindow < 256<<10 || c.StreamWindow > 64<<20) {
		bad("stream_window must be between 262144 and 67108864 bytes")
	}
	if c.HandshakeTimeout <= 0 {
		bad("handshake_timeout must be positive")
	}
	for _, name := range c.TunnelNames() {
		t := c.Tunnels[name]
		if err := t.validate(); err != nil {
			bad("tunnels.%s: %v", name, err)
		}
	}
	return errors.Join(errs...)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}

func (t *TunnelConfig) validate() error {
	if t.Proto != "http" && t.Proto != "tcp" {
		return fmt.Errorf("proto %q: want \"http\" or \"tcp\"", t.Proto)
	}
	if _, err := ParseTarget(t.Proto, t.Addr); err != nil {
		return err
	}
	if t.Subdomain != "" {
		if err := names.ValidateLabel(t.Subdomain); err != nil {
			return err
		}
	}
	if t.Hostname != "" {
		if err := names.ValidateHostname(t.Hostname); err != nil {
			return err
		}
	}
	if t.Proto == "tcp" && (t.Subdomain != "" || t.Hostname != "") {
		return errors.New("tcp tunnels take remote_port, not subdomain or hostname")
	}
	if t.Proto == "http" && t.RemotePort != 0 {
		return errors.New("remote_port is for tcp tunnels")
	}
	if t.Proto == "tcp" && (len(t.BasicAuth) > 0 || len(t.RequireHeader) > 0 || len(t.RequestHeaderAdd)+len(t.RequestHeaderRemove)+len(t.ResponseHeaderAdd)+len(t.ResponseHeaderRemove) > 0 || t.HealthPath != "") {
		return errors.New("basic_auth, require_header, header rules and health_path are for http tunnels")
	}
	if t.BasicAuthForward && len(t.BasicAuth) == 0 {
		return errors.New("basic_auth_forward needs basic_auth")
	}
	for _, c := range t.BasicAuth {
		if u, _, ok := strings.Cut(c, ":"); !ok || u == "" {
			return fmt.Errorf("basic_auth %q: want USER:PASSWORD", redact(c))
		}
	}
	for _, h := range append(append(append([]string(nil), t.RequireHeader...), t.RequestHeaderAdd...), t.ResponseHeaderAdd...) {
		n, v, ok := strings.Cut(h, ":")
		if !ok || !httpguts.ValidHeaderFieldName(strings.TrimSpace(n)) || !httpguts.ValidHeaderFieldValue(strings.TrimSpace(v)) {
			return fmt.Errorf("header %q: want \"Name: value\"", h)
		}
	}
	for _, n := range append(append([]string(nil), t.RequestHeaderRemove...), t.ResponseHeaderRemove...) {
		if !httpguts.ValidHeaderFieldName(strings.TrimSpace(n)) {
			return fmt.Errorf("header name %q is not valid", n)
		}
	}
	for _, c := range append(append([]string(nil), t.AllowCIDR...), t.DenyCIDR...) {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err := netip.ParseAddr(c); err != nil {
				return fmt.Errorf("%q is not a CIDR (like 10.0.0.0/8) or an address", c)
			}
		}
	}
	if t.PoolStrategy != "" && t.PoolStrategy != "round-robin" && t.PoolStrategy != "least-streams" {
		return fmt.Errorf("pool_strategy %q: want round-robin or least-streams", t.PoolStrategy)
	}
	if t.HealthPath != "" && !strings.HasPrefix(t.HealthPath, "/") {
		return fmt.Errorf("health_path %q must start with /", t.HealthPath)
	}
	if t.HealthInterval < 0 {
		return errors.New("health_interval may not be negative")
	}
	if t.RemotePort < 0 || t.RemotePort > 65535 {
		return fmt.Errorf("remote_port %d is not a port", t.RemotePort)
	}
	if err := validateProxyProtocol(t.Proto, t.ProxyProtocol); err != nil {
		return err
	}
	return validateUpstreamProtocol(t)
}

// SendsCredential reports whether the client presents a bearer credential
// (API key or token) in its handshake. A client certificate is no such
// credential: it needs wss:// anyway.
func (c *Config) SendsCredential() bool { return c.APIKey != "" || c.Token != "" }

func (c *Config) credentialName() string {
	if c.APIKey != "" {
		return "API key"
	}
	return "token"
}

// PlaintextOffHost reports whether server is a ws:// URL whose host is not
// loopback: an address in 127.0.0.0/8 or ::1, "localhost" or a name under
// ".localhost" (RFC 6761 keeps those on the machine). Names are not
// resolved: what a name resolves to can change, and the check is made
// before anything is sent.
func PlaintextOffHost(server string) bool {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "ws" {
		return false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return false
	}
	return true
}

// TunnelNames returns the configured tunnel names, sorted.
func (c *Config) TunnelNames() []string {
	out := make([]string, 0, len(c.Tunnels))
	for n := range c.Tunnels {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// redact hides the password of a USER:PASSWORD entry in messages.
func redact(cred string) string {
	if u, _, ok := strings.Cut(cred, ":"); ok {
		return u + ":***"
	}
	return "***"
}

func distinct(list []string) int {
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		seen[s] = true
	}
	return len(seen)
}
