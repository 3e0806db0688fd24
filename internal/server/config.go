package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/certs"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/httpfwd"
	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/names"
	"github.com/porthole/porthole/internal/store"
)

// Config is everything the server reads from flags and its TOML file.
type Config struct {
	Domain     string `toml:"domain"`
	HTTPAddr   string `toml:"http_addr"`
	HTTPSAddr  string `toml:"https_addr"`
	TunnelAddr string `toml:"tunnel_addr"`
	AdminAddr  string `toml:"admin_addr"`
	DataDir    string `toml:"data_dir"`
	Database   string `toml:"database"`
	// DatabasePool is the [database_pool] table: PostgreSQL's pool size
	// and timeouts, merged into Database's URL (see DatabaseURL).
	DatabasePool store.PoolConfig `toml:"database_pool"`
	NoAuth       bool             `toml:"no_auth"`
	// PublicPort is the port shown in public URLs; 0 means the public
	// listener's own port.
	PublicPort int `toml:"public_port"`
	// PublicHTTPSPort is the same for https URLs.
	PublicHTTPSPort int    `toml:"public_https_port"`
	TLSCert         string `toml:"tls_cert"`
	TLSKey          string `toml:"tls_key"`
	ClientCA        string `toml:"client_ca"`
	TCPPorts        string `toml:"tcp_ports"`
	// AdminToken protects the admin JSON API; empty disables the API.
	AdminToken string `toml:"admin_token"`
	// TLS is the [tls] table: certificate reloads and ACME.
	TLS certs.Config `toml:"tls"`

	Subdomains SubdomainConfig `toml:"subdomains"`
	HTTP       HTTPConfig      `toml:"http"`
	Tunnel     TunnelConfig    `toml:"tunnel"`
	Limits     limits.Config   `toml:"limits"`
	Auth       auth.Config     `toml:"auth"`
	Metrics    MetricsConfig   `toml:"metrics"`
	Cluster    ClusterConfig   `toml:"cluster"`
}

// ClusterConfig is the [cluster] table: this server as one node of the
// cluster that shares its PostgreSQL database (docs/cluster.md).
type ClusterConfig struct {
	// Addr is the listener for the other nodes; empty: a single server.
	Addr string `toml:"addr"`
	// Advertise is where the other nodes reach this one; default Addr.
	Advertise string `toml:"advertise"`
	// SecretFile holds the secret the nodes share.
	SecretFile string `toml:"secret_file"`
	// NodeName names the node; default the host name and cluster port.
	NodeName string `toml:"node_name"`
}

// AdvertiseAddr is where the other nodes reach this one.
func (c *ClusterConfig) AdvertiseAddr() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Addr
}

// Name is the node's name: NodeName, or the host name and the cluster
// port.
func (c *ClusterConfig) Name() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	_, port, _ := net.SplitHostPort(c.Addr)
	return host + "-" + port
}

func (c *ClusterConfig) validate(database string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Addr == "" {
		if c.Advertise != "" || c.SecretFile != "" || c.NodeName != "" {
			bad("cluster: advertise, secret_file and node_name need cluster.addr (--cluster-addr)")
		}
		return errs
	}
	if !strings.HasPrefix(database, "postgres://") && !strings.HasPrefix(database, "postgresql://") {
		bad("cluster.addr: a cluster shares a PostgreSQL database: set database (--database) to a postgres:// URL")
	}
	if c.SecretFile == "" {
		bad("cluster.addr needs cluster.secret_file (--cluster-secret-file): the nodes authenticate each other with it")
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		bad("cluster.addr: %q is not HOST:PORT (%v)", c.Addr, err)
	}
	if c.Advertise != "" {
		h, p, err := net.SplitHostPort(c.Advertise)
		if err != nil || h == "" || p == "0" {
			bad("cluster.advertise: %q is not a HOST:PORT other nodes can dial", c.Advertise)
		}
	} else if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		bad("cluster.addr %q listens on every address: set cluster.advertise (--cluster-advertise) to the HOST:PORT other nodes dial", c.Addr)
	} else if _, p, _ := net.SplitHostPort(c.Addr); p == "0" {
		bad("cluster.addr %q has no fixed port: other nodes could not dial it; set cluster.advertise", c.Addr)
	}
	if c.NodeName != "" {
		if err := names.ValidateLabel(strings.ToLower(c.NodeName)); err != nil {
			bad("cluster.node_name: %v", err)
		}
	}
	return errs
}

// SubdomainConfig chooses how tunnels are named.
type SubdomainConfig struct {
	// Strategy for clients that do not ask for a name: "random"
	// (adjective-noun-number), "uuid", or "user" (clients must ask).
	Strategy string `toml:"strategy"`
	// Reserved names no tunnel may take. Empty means names.DefaultReserved.
	Reserved []string `toml:"reserved"`
}

// HTTPConfig holds the public listeners' protections.
type HTTPConfig struct {
	ReadHeaderTimeout config.Duration `toml:"read_header_timeout"`
	IdleTimeout       config.Duration `toml:"idle_timeout"`
	// WriteTimeout closes a visitor connection whose writes make no
	// progress for this long: a visitor that stops reading a response. It
	// is reset by every write, so long downloads and quiet event streams
	// run as long as they like. 0 turns it off.
	WriteTimeout   config.Duration `toml:"write_timeout"`
	MaxHeaderBytes int             `toml:"max_header_bytes"`
	// MaxConcurrentStreams bounds the requests in progress on one HTTP/2
	// visitor connection (each also counts as a visitor connection).
	MaxConcurrentStreams int `toml:"max_concurrent_streams"`
	// MaxHeaderFields bounds the header fields of a response from a
	// tunnel; MaxHeaderBytes bounds its header block too (502 past
	// either).
	MaxHeaderFields int `toml:"max_header_fields"`
	// ShutdownTimeout bounds how long in-flight requests may drain on
	// SIGINT/SIGTERM.
	ShutdownTimeout config.Duration `toml:"shutdown_timeout"`
	// KeepAlive is the TCP keep-alive period on accepted connections.
	KeepAlive config.Duration `toml:"tcp_keepalive"`
	// H2C serves cleartext HTTP/2 (prior knowledge) on the plain HTTP
	// listener besides HTTP/1.1 (h2c.go). Off by default.
	H2C bool `toml:"h2c"`
	// ProxyProtocolFrom lists the L4 load balancers (addresses or CIDR
	// prefixes) whose PROXY protocol header gives the visitor's address,
	// on the public, HTTPS, tunnel and TCP port listeners. Connections
	// from them must send it; others are taken as they come. Empty: off.
	ProxyProtocolFrom []string `toml:"proxy_protocol_from"`
}

// TunnelConfig tunes client sessions.
type TunnelConfig struct {
	// GracePeriod keeps a disconnected client's names for it.
	GracePeriod config.Duration `toml:"grace_period"`
	// Heartbeat is the ping interval; a peer silent for three intervals is
	// considered gone.
	Heartbeat config.Duration `toml:"heartbeat"`
	// HandshakeTimeout bounds the time from TCP accept to Welcome.
	HandshakeTimeout config.Duration `toml:"handshake_timeout"`
	// StreamWindow is the multiplexer's per-stream window in bytes.
	StreamWindow int `toml:"stream_window"`
	// IdleStreams is how many idle streams (kept-alive connections to the
	// local app) the server keeps per tunnel for reuse.
	IdleStreams int `toml:"idle_streams"`
	// BufferBudget bounds, across all sessions, the bytes received from
	// clients and not yet taken by visitors (slow or stalled readers).
	// Windows above the protocol's 256 KiB per stream come from half of
	// it; past all of it, a session's data waits. See docs/limits.md.
	BufferBudget int64 `toml:"buffer_budget"`
	// Compression is "allow" (a client that asks with --compress gets a
	// zstd-compressed session) or "off" (it runs uncompressed).
	// docs/compression.md says when it pays.
	Compression string `toml:"compression"`
}

// DefaultBufferBudget is tunnel.buffer_budget's default: 100 readers that
// stop reading large downloads pin less than 100 MiB (docs/limits.md).
const DefaultBufferBudget = 64 << 20

// Tunnel compression settings.
const (
	CompressionAllow = "allow"
	CompressionOff   = "off"
)

// MetricsConfig tunes the Prometheus export.
type MetricsConfig struct {
	// Pprof serves Go's profiler at /debug/pprof/ on the admin listener,
	// behind the admin token, for profiling a live deployment.
	Pprof bool `toml:"pprof"`
	// PerTunnelLabels adds a series per tunnel hostname. Off by default:
	// hostnames are unbounded, and so would the series be.
	PerTunnelLabels bool `toml:"per_tunnel_labels"`
}

// DefaultConfig returns the defaults that ../CONTRACT and the README name.
func DefaultConfig() Config {
	return Config{
		Domain:     "localhost",
		HTTPAddr:   ":8080",
		TunnelAddr: ":8081",
		AdminAddr:  "127.0.0.1:8082",
		DataDir:    "./porthole-data",
		TCPPorts:   "20000-20999",
		Subdomains: SubdomainConfig{Strategy: string(names.Readable)},
		HTTP: HTTPConfig{
			ReadHeaderTimeout: config.Duration(10 * time.Second),
			IdleTimeout:       config.Duration(120 * time.Second),
			MaxHeaderBytes:    64 << 10,
			MaxHeaderFields:   httpfwd.DefaultMaxHeaderFields,
			ShutdownTimeout:   config.Duration(15 * time.Second),
			KeepAlive:         config.Duration(30 * time.Second),
			WriteTimeout:      config.Duration(60 * time.Second),
			// Go's own default is 250; each request is also a visitor
			// connection of its address.
			MaxConcurrentStreams: 100,
		},
		Tunnel: TunnelConfig{
			GracePeriod:      config.Duration(60 * time.Second),
			Heartbeat:        config.Duration(8 * time.Second),
			HandshakeTimeout: config.Duration(10 * time.Second),
			IdleStreams:      128,
			Compression:      CompressionAllow,
			BufferBudget:     DefaultBufferBudget,
		},
		Limits: limits.Defaults(),
	}
}

// DatabaseURL is the database to open: Database with the [database_pool]
// keys as URL parameters.
func (c *Config) DatabaseURL() (string, error) { return c.DatabasePool.Apply(c.Database) }

// Validate checks the config before any listener is opened.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.Domain = strings.TrimSuffix(strings.ToLower(c.Domain), ".")
	if c.Domain != "localhost" {
		if err := names.ValidateHostname(c.Domain); err != nil {
			bad("domain: %v", err)
		}
	}
	for _, a := range []struct{ name, addr string }{{"http_addr", c.HTTPAddr}, {"tunnel_addr", c.TunnelAddr}, {"admin_addr", c.AdminAddr}, {"https_addr", c.HTTPSAddr}} {
		if a.addr == "" {
			if a.name != "https_addr" && a.name != "admin_addr" {
				bad("%s: must be set", a.name)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad("%s: %q is not HOST:PORT (%v)", a.name, a.addr, err)
		}
	}
	if _, err := parseProxyFrom(c.HTTP.ProxyProtocolFrom); err != nil {
		bad("http.proxy_protocol_from: %v", err)
	}
	if _, err := c.DatabaseURL(); err != nil {
		bad("%v", err)
	}
	if c.PublicPort < 0 || c.PublicPort > 65535 {
		bad("public_port: %d is not a port", c.PublicPort)
	}
	if c.PublicHTTPSPort < 0 || c.PublicHTTPSPort > 65535 {
		bad("public_https_port: %d is not a port", c.PublicHTTPSPort)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert and tls_key must be given together")
	}
	if c.HTTPSAddr != "" && c.TLSCert == "" && !c.TLS.ACME.Enabled() {
		bad("https_addr needs tls_cert and tls_key, or certificates from [tls.acme]")
	}
	if c.ClientCA != "" && c.TLSCert == "" && !c.TLS.ACME.Enabled() {
		bad("client_ca needs tls_cert and tls_key, or [tls.acme]: client certificates are checked on the TLS tunnel listener")
	}
	if c.TLSCert != "" && c.TLS.ACME.Wildcard {
		bad("tls_cert and tls.acme.wildcard both provide the *.DOMAIN certificate: choose one")
	}
	if c.TLS.ACME.Wildcard && c.Domain == "localhost" {
		bad("tls.acme.wildcard needs a real domain (--domain); no CA issues certificates for localhost")
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := ParsePortRange(c.TCPPorts); err != nil {
		bad("tcp_ports: %v", err)
	}
	if _, err := names.ParseStrategy(c.Subdomains.Strategy); err != nil {
		bad("subdomains.strategy: %v", err)
	}
	for _, r := range c.Subdomains.Reserved {
		if err := names.ValidateLabel(r); err != nil {
			bad("subdomains.reserved: %v", err)
		}
	}
	if c.HTTP.ReadHeaderTimeout <= 0 {
		bad("http.read_header_timeout must be positive")
	}
	if c.HTTP.MaxHeaderBytes < 4096 {
		bad("http.max_header_bytes: %d is below the 4096 minimum", c.HTTP.MaxHeaderBytes)
	}
	if c.HTTP.MaxHeaderFields < 16 {
		bad("http.max_header_fields: %d is below the 16 minimum", c.HTTP.MaxHeaderFields)
	}
	if c.HTTP.IdleTimeout < 0 || c.HTTP.WriteTimeout < 0 || c.HTTP.ShutdownTimeout < 0 {
		bad("http timeouts may not be negative")
	}
	if c.Tunnel.GracePeriod < 0 {
		bad("tunnel.grace_period may not be negative")
	}
	if c.Tunnel.Heartbeat < config.Duration(time.Second) || c.Tunnel.Heartbeat > config.Duration(10*time.Second) {
		bad("tunnel.heartbeat must be between 1s and 10s, so a dead peer is found within 30s")
	}
	if c.Tunnel.HandshakeTimeout <= 0 {
		bad("tunnel.handshake_timeout must be positive")
	}
	if c.Tunnel.StreamWindow != 0 && (c.Tunnel.StreamWindow < 256<<10 || c.Tunnel.StreamWindow > 64<<20) {
		bad("tunnel.stream_window must be between 262144 and 67108864 bytes")
	}
	if c.HTTP.MaxConcurrentStreams < 1 || c.HTTP.MaxConcurrentStreams > 1000 {
		bad("http.max_concurrent_streams must be between 1 and 1000")
	}
	if c.Tunnel.BufferBudget < 4<<20 {
		bad("tunnel.buffer_budget: %d is below the 4194304 (4 MiB) minimum", c.Tunnel.BufferBudget)
	}
	if c.Tunnel.IdleStreams < 1 {
		bad("tunnel.idle_streams must be at least 1")
	}
	if c.Tunnel.Compression != CompressionAllow && c.Tunnel.Compression != CompressionOff {
		bad("tunnel.compression: %q, want %q or %q", c.Tunnel.Compression, CompressionAllow, CompressionOff)
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Cluster.validate(c.Database)...)
	return errors.Join(errs...)
}

// ParsePortRange parses "LO-HI".
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a range LO-HI", s)
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%q is not a range LO-HI of ports 1-65535", s)
	}
	return lo, hi, nil
}
