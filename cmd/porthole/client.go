package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/dashboard"
	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/version"
)

// clientFlags are the connection flags shared by http, tcp and start.
type clientFlags struct {
	cfg     client.Config
	cfgFile string
	servers []string
	tunnel  client.TunnelConfig
	inspect inspect.Config
	noDash  bool
}

func (cf *clientFlags) register(cmd *cobra.Command, withTunnel bool, kind string) {
	cf.cfg = client.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&cf.cfgFile, "config", "", "TOML configuration file")
	f.StringArrayVar(&cf.servers, "server", nil, "ws:// or wss:// address of a server's tunnel listener; repeat for failover (when unset: $PORTHOLE_SERVER, else ws://localhost:8081)")
	f.IntVar(&cf.cfg.Links, "links", 1, "keep sessions to this many of the --server addresses at once, each serving the tunnels (needs as many different --server addresses)")
	f.StringVar(&cf.cfg.APIKey, "api-key", "", "API key (when unset: $PORTHOLE_API_KEY)")
	f.StringVar(&cf.cfg.Token, "token", "", "signed token (when unset: $PORTHOLE_TOKEN)")
	f.StringVar(&cf.cfg.Cert, "cert", "", "client certificate for mutual TLS")
	f.StringVar(&cf.cfg.Key, "key", "", "private key for --cert")
	f.StringVar(&cf.cfg.CAFile, "ca-file", "", "CA to verify a wss:// server with, besides the system roots")
	f.BoolVar(&cf.cfg.InsecureSkipVerify, "insecure-skip-verify", false, "do not verify the wss:// server's certificate (unsafe)")
	f.BoolVar(&cf.cfg.InsecurePlaintext, "insecure-plaintext", false, "allow sending the API key or token over ws:// to a server that is not on loopback (unsafe: anyone on the path can read it)")
	f.StringArrayVar(&cf.cfg.ServerPins, "server-pin", nil, "accept a wss:// server whose key has this pin, sha256:BASE64 or sha256:HEX (self-signed servers; the server logs its pin at start); repeatable")
	f.StringVar(&cf.cfg.InspectAddr, "inspect-addr", cf.cfg.InspectAddr, `local status API and request inspector address ("off" to turn them off)`)
	cf.inspect = inspect.DefaultConfig()
	f.Var(&cf.inspect.BodyLimit, "inspect-body-limit", "bytes of each request and response body the inspector keeps, e.g. 64KiB or 1MiB (0 keeps none)")
	f.IntVar(&cf.inspect.Capacity, "inspect-capacity", cf.inspect.Capacity, "how many recent requests the inspector keeps")
	f.BoolVar(&cf.noDash, "no-dashboard", false, "print log lines instead of the terminal dashboard, also when stdout is a terminal")
	f.Var(&cf.cfg.Reconnect.Base, "reconnect-base", "first reconnect backoff")
	f.Var(&cf.cfg.Reconnect.Max, "reconnect-max", "longest reconnect backoff")
	f.BoolVar(&cf.cfg.Compress, "compress", false, "ask the server to compress tunnel traffic (zstd); pays on slow links with text such as JSON or HTML, see docs/compression.md")
	if !withTunnel {
		return
	}
	if kind == "http" {
		f.StringVar(&cf.tunnel.Subdomain, "subdomain", "", "ask for this subdomain (default: a random one)")
		f.StringVar(&cf.tunnel.Hostname, "hostname", "", "a custom domain verified for your user")
		f.StringVar(&cf.tunnel.HostHeader, "host-header", "", `Host header for the local app: "rewrite" (the target's), a value, or empty (the visitor's)`)
		f.BoolVar(&cf.tunnel.InsecureSkipVerify, "local-insecure-skip-verify", false, "accept any certificate from an https:// local target")
		f.BoolVar(&cf.tunnel.HTTPSRedirect, "https-redirect", false, "have the server redirect plain-HTTP visitors to the https:// URL")
		f.Int64Var(&cf.tunnel.HSTSMaxAge, "hsts-max-age", 0, "have the server send Strict-Transport-Security with this max-age (seconds) over HTTPS")
		f.StringArrayVar(&cf.tunnel.BasicAuth, "basic-auth", nil, "require visitors to log in as USER:PASSWORD (repeatable)")
		f.BoolVar(&cf.tunnel.BasicAuthForward, "basic-auth-forward", false, "pass the visitor's Authorization header on to the local app (by default the server removes it)")
		f.StringArrayVar(&cf.tunnel.RequireHeader, "require-header", nil, `require visitors to send this header, "Name: value" (repeatable)`)
		f.StringArrayVar(&cf.tunnel.RequestHeaderAdd, "request-header-add", nil, `add "Name: value" to requests (repeatable)`)
		f.StringArrayVar(&cf.tunnel.RequestHeaderRemove, "request-header-remove", nil, "remove this header from requests (repeatable)")
		f.StringArrayVar(&cf.tunnel.ResponseHeaderAdd, "response-header-add", nil, `add "Name: value" to responses (repeatable)`)
		f.StringArrayVar(&cf.tunnel.ResponseHeaderRemove, "response-header-remove", nil, "remove this header from responses (repeatable)")
		f.StringVar(&cf.tunnel.HealthPath, "health-path", "", "check the local app at this path; while it fails, the server sends no visitors to this client")
		f.StringVar(&cf.tunnel.UpstreamProtocol, "upstream-protocol", "", client.UpstreamHelp)
		// The real default goes in the variable, so help prints it once and right.
		cf.tunnel.HealthInterval = config.Duration(client.DefaultHealthInterval)
		f.Var(&cf.tunnel.HealthInterval, "health-interval", "how often to run the health check")
	} else {
		f.IntVar(&cf.tunnel.RemotePort, "remote-port", 0, "ask for this public port")
		f.StringVar(&cf.tunnel.ProxyProtocol, "proxy-protocol", "", `send the local app a PROXY protocol header with the visitor's address: "v2" (binary) or "v1" (text)`)
	}
	f.StringArrayVar(&cf.tunnel.AllowCIDR, "allow-cidr", nil, "admit only visitors from this network (repeatable)")
	f.StringArrayVar(&cf.tunnel.DenyCIDR, "deny-cidr", nil, "refuse visitors from this network (repeatable)")
	f.BoolVar(&cf.tunnel.Pool, "pool", false, "serve the name together with your other clients that bind it with --pool (load balancing)")
	f.StringVar(&cf.tunnel.PoolStrategy, "pool-strategy", "", "how a new pool spreads visitors: round-robin (default) or least-streams")
}

// load applies the config file, environment and flags, in increasing
// order of precedence.
func (cf *clientFlags) load(cmd *cobra.Command) error {
	f := cmd.Flags()
	if err := config.LoadWithFlags(f, cf.cfgFile, &cf.cfg); err != nil {
		return err
	}
	env := func(flag, name string, dst *string) {
		if v := os.Getenv(name); v != "" && !f.Changed(flag) {
			*dst = v
		}
	}
	env("api-key", "PORTHOLE_API_KEY", &cf.cfg.APIKey)
	env("token", "PORTHOLE_TOKEN", &cf.cfg.Token)
	if f.Changed("links") && (cf.cfg.Links < 1 || cf.cfg.Links > client.MaxLinks) {
		return usagef("--links %d: want 1 to %d", cf.cfg.Links, client.MaxLinks)
	}
	switch {
	case len(cf.servers) > 0:
		cf.cfg.Servers = cf.servers
	case os.Getenv("PORTHOLE_SERVER") != "":
		cf.cfg.Servers = []string{os.Getenv("PORTHOLE_SERVER")}
	case len(cf.cfg.Servers) == 0:
		cf.cfg.Servers = []string{"ws://localhost:8081"}
	}
	return nil
}

func clientCmd(g *globalFlags, kind string) *cobra.Command {
	var cf clientFlags
	short := "Expose a local HTTP app: porthole http 3000"
	if kind == "tcp" {
		short = "Expose a local TCP service: porthole tcp 5432"
	}
	cmd := &cobra.Command{
		Use:   kind + " TARGET",
		Short: short,
		Long: short + "\n\nTARGET is PORT (meaning localhost:PORT)" +
			map[string]string{"http": ", HOST:PORT or http(s)://HOST:PORT.", "tcp": " or HOST:PORT."}[kind],
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s needs exactly one TARGET (PORT, HOST:PORT or URL), got %d arguments", kind, len(args))
			}
			if _, err := client.ParseTarget(kind, args[0]); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cf.load(cmd); err != nil {
				return err
			}
			cf.tunnel.Proto = kind
			cf.tunnel.Addr = args[0]
			return runClient(cmd, g, &cf, []client.Spec{{Name: kind, Config: cf.tunnel}})
		},
	}
	cf.register(cmd, true, kind)
	return cmd
}

func startCmd(g *globalFlags) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "start [NAME...]",
		Short: "Start the tunnels named in a configuration file ([tunnels.NAME] tables); all when no NAME is given",
		RunE: func(cmd *cobra.Command, args []string) error {
			if cf.cfgFile == "" {
				return usagef("start needs --config FILE with [tunnels.NAME] tables")
			}
			if err := cf.load(cmd); err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				names = cf.cfg.TunnelNames()
			}
			if len(names) == 0 {
				return fmt.Errorf("%s defines no [tunnels.NAME] tables", cf.cfgFile)
			}
			var specs []client.Spec
			for _, n := range names {
				t, ok := cf.cfg.Tunnels[n]
				if !ok {
					return usagef("no tunnel %q in %s (it has: %v)", n, cf.cfgFile, cf.cfg.TunnelNames())
				}
				specs = append(specs, client.Spec{Name: n, Config: t})
			}
			return runClient(cmd, g, &cf, specs)
		},
	}
	cf.register(cmd, false, "")
	return cmd
}

// runClient runs tunnels until interrupted or a final error. On a terminal
// it draws the dashboard; otherwise it prints the Forwarding lines on
// stdout and logs on stderr, for scripts and service managers.
func runClient(cmd *cobra.Command, g *globalFlags, cf *clientFlags, specs []client.Spec) error {
	cfg := &cf.cfg
	out := cmd.OutOrStdout()
	var dash *dashboard.Dashboard
	tty, isTTY := out.(*os.File)
	isTTY = isTTY && !cf.noDash && term.IsTerminal(int(tty.Fd())) && os.Getenv("TERM") != "dumb"
	logOut := cmd.ErrOrStderr()
	if isTTY {
		dash = dashboard.New(dashboard.Options{
			Out:   out,
			Color: os.Getenv("NO_COLOR") == "",
			Size:  func() (int, int, error) { return term.GetSize(int(tty.Fd())) },
		})
		// Log lines would scroll through the drawing: the dashboard shows
		// the latest ones, and only warnings unless asked for more.
		logOut = dash.LogWriter()
		if !cmd.Flags().Changed("log-level") {
			g.logLevel = "warn"
		}
	}
	log, err := g.logger(logOut)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		// Flags and config values the client can check itself.
		return usageError{err}
	}
	if err := cf.inspect.Validate(); err != nil {
		return usageError{err}
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return err
	}
	if cfg.InsecureSkipVerify {
		log.Warn("server certificate verification is OFF (--insecure-skip-verify): anyone on the path can read and change this tunnel's traffic")
	}
	if cfg.InsecurePlaintext && cfg.SendsCredential() {
		for _, s := range cfg.Servers {
			if client.PlaintextOffHost(s) {
				log.Warn("your credential goes in CLEAR TEXT over ws:// (--insecure-plaintext): anyone on the path can read it and open tunnels as you; use wss://", "server", s)
			}
		}
	}
	store, err := inspect.NewStore(cf.inspect, nil)
	if err != nil {
		return err
	}
	onEvent := func(e client.Event) { printEvent(out, e) }
	if dash != nil {
		onEvent = dash.Event
	}
	recorder := store
	if (cfg.InspectAddr == "" || cfg.InspectAddr == "off") && dash == nil {
		recorder = nil // nothing would ever show the recorded requests
	}
	c, err := client.New(*cfg, specs, client.Deps{
		Logger:    log,
		TLS:       tc,
		Version:   version.String(),
		OnEvent:   onEvent,
		Inspector: recorder,
	})
	if err != nil {
		// The tunnels' flags or config values are wrong.
		return usageError{err}
	}
	host, _, _ := net.SplitHostPort(cfg.InspectAddr)
	h := inspect.NewHandler(inspect.Options{
		Store:      store,
		Metrics:    inspect.NewMetrics(c.InspectSnapshot, store),
		Replayer:   c,
		Status:     c.Handler(),
		ListenHost: host,
		Logger:     log,
	})
	url, stopInspect := startInspect(log, cfg.InspectAddr, h, cmd.Flags().Changed("inspect-addr"))
	defer stopInspect()
	if dash == nil {
		return c.Run(cmd.Context())
	}
	recent := store.Recent
	if !hasHTTP(specs) {
		recent = nil // TCP tunnels have no requests to list
	}
	dash.SetSources(c.Status, recent, url)
	ctx, stopDash := context.WithCancel(cmd.Context())
	drawn := make(chan struct{})
	go func() { dash.Run(ctx); close(drawn) }()
	err = c.Run(cmd.Context())
	// Give the terminal back before main prints a final error on it.
	stopDash()
	<-drawn
	return err
}

func hasHTTP(specs []client.Spec) bool {
	for _, s := range specs {
		if s.Config.Proto == "http" {
			return true
		}
	}
	return false
}

func printEvent(out io.Writer, e client.Event) {
	if e.Kind == client.EventForwarding {
		fmt.Fprintf(out, "Forwarding %s -> %s\n", e.Tunnel.URL, e.Tunnel.Target)
	}
}

// startInspect starts the local status API and inspector and returns its
// URL (empty when it did not start). When the default address is taken
// (another client runs), it tries the next few ports.
func startInspect(log *slog.Logger, addr string, h http.Handler, explicit bool) (string, func()) {
	if addr == "" || addr == "off" {
		return "", func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && !explicit {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		for i := 1; i <= 10 && err != nil; i++ {
			ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p+i)))
		}
	}
	if err != nil {
		log.Warn("status API not started", "addr", addr, "err", err)
		return "", func() {}
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		log.Warn("the request inspector is reachable from other machines: it shows request bodies and replays requests to the local app", "addr", ln.Addr().String())
	}
	// Cancelled on stop, so that open event streams (a browser tab on the
	// inspector) end at once instead of holding Shutdown to its timeout.
	base, cancelBase := context.WithCancel(context.Background())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String()
	log.Info("request inspector", "url", url, "status", url+"/api/status")
	return url, func() {
		cancelBase()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}
