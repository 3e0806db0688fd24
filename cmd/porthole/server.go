package main

import (
	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/version"
)

func serverCmd(g *globalFlags) *cobra.Command {
	cfg := server.DefaultConfig()
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the public side: accepts tunnel clients and proxies visitors to them",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.LoadWithFlags(cmd.Flags(), cfgFile, &cfg); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			deps, closeDeps, err := serverDeps(cmd.Context(), &cfg, log)
			if err != nil {
				return err
			}
			defer closeDeps()
			deps.Version = version.String()
			srv, err := server.New(cfg, deps)
			if err != nil {
				return err
			}
			if err := watchRevocations(cmd.Context(), srv, deps); err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "TOML configuration file")
	f.StringVar(&cfg.Domain, "domain", cfg.Domain, "base domain; tunnels are SUB.DOMAIN")
	f.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "public HTTP listener")
	f.StringVar(&cfg.HTTPSAddr, "https-addr", cfg.HTTPSAddr, "public HTTPS listener (off when empty)")
	f.StringVar(&cfg.TunnelAddr, "tunnel-addr", cfg.TunnelAddr, "listener tunnel clients connect to (WebSocket; TLS when a certificate is configured)")
	f.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "health, readiness, metrics and admin API listener")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "state directory (SQLite database, keys, certificates)")
	f.StringVar(&cfg.Database, "database", cfg.Database, "sqlite:PATH or postgres://...; overrides the SQLite file in --data-dir")
	f.BoolVar(&cfg.NoAuth, "no-auth", cfg.NoAuth, "accept clients without credentials (development only)")
	f.IntVar(&cfg.PublicPort, "public-port", cfg.PublicPort, "port to show in public http URLs when a proxy in front changes it")
	f.IntVar(&cfg.PublicHTTPSPort, "public-https-port", cfg.PublicHTTPSPort, "port to show in public https URLs when a proxy in front changes it")
	f.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "certificate file (e.g. *.DOMAIN and DOMAIN) for HTTPS and the tunnel listener")
	f.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "private key file for --tls-cert")
	f.StringVar(&cfg.ClientCA, "client-ca", cfg.ClientCA, "CA whose client certificates identify users on the tunnel listener")
	f.StringVar(&cfg.TCPPorts, "tcp-ports", cfg.TCPPorts, "range of public ports for tcp tunnels, LO-HI")
	f.StringVar(&cfg.Subdomains.Strategy, "subdomain-strategy", cfg.Subdomains.Strategy, "names for clients that do not ask: random, uuid or user")
	f.Var(&cfg.HTTP.ReadHeaderTimeout, "read-header-timeout", "time a visitor has to send request headers")
	f.Var(&cfg.HTTP.IdleTimeout, "idle-timeout", "keep-alive timeout for idle visitor connections")
	f.IntVar(&cfg.HTTP.MaxHeaderBytes, "max-header-bytes", cfg.HTTP.MaxHeaderBytes, "largest request header a visitor may send (431 above it)")
	f.Var(&cfg.HTTP.WriteTimeout, "write-timeout", "close a visitor connection that takes no response bytes for this long (0: never)")
	f.StringSliceVar(&cfg.HTTP.ProxyProtocolFrom, "proxy-protocol-from", cfg.HTTP.ProxyProtocolFrom, "addresses or CIDRs of L4 load balancers that send a PROXY protocol header (v1 or v2) with the visitor's address; they must send it, others are taken as they come")
	f.BoolVar(&cfg.HTTP.H2C, "h2c", cfg.HTTP.H2C, "also serve cleartext HTTP/2 (prior knowledge, for gRPC without TLS) on the plain HTTP listener")
	f.Var(&cfg.HTTP.ShutdownTimeout, "shutdown-timeout", "how long in-flight requests may drain on SIGINT/SIGTERM")
	f.Var(&cfg.Tunnel.GracePeriod, "grace-period", "how long a disconnected client's names are kept for it")
	f.StringVar(&cfg.AdminToken, "admin-token", cfg.AdminToken, "bearer token for the admin JSON API (off when empty)")
	f.StringVar(&cfg.Cluster.Addr, "cluster-addr", cfg.Cluster.Addr, "listener for node-to-node traffic; with a postgres:// --database this server becomes a node of the cluster that shares it (empty: a single server)")
	f.StringVar(&cfg.Cluster.Advertise, "cluster-advertise", cfg.Cluster.Advertise, "HOST:PORT where the other nodes reach this node (default: --cluster-addr)")
	f.StringVar(&cfg.Cluster.SecretFile, "cluster-secret-file", cfg.Cluster.SecretFile, "file with the secret the nodes share (at least 16 bytes); required with --cluster-addr")
	f.StringVar(&cfg.Cluster.NodeName, "node-name", cfg.Cluster.NodeName, "this node's name in logs, metrics and admin nodes (default: host name and cluster port)")
	return cmd
}
