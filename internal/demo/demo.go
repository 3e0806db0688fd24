package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/server"
)

// Options are the demo's addresses; all are on loopback.
type Options struct {
	HTTPAddr    string
	TunnelAddr  string
	AdminAddr   string
	InspectAddr string
	// Explicit says which addresses the user chose; a busy default falls
	// back to a free port instead of failing.
	Explicit map[string]bool
	Logger   *slog.Logger
	// OnForwarding receives each Forwarding event.
	OnForwarding func(*client.TunnelStatus)
	// OnClient, when set, is called with the client before it runs, to
	// serve its status API and inspector.
	OnClient func(*client.Client)
	// Inspector records the demo tunnel's requests.
	Inspector *inspect.Store
	Version   string
}

// DefaultOptions are the contract's demo addresses, bound to loopback.
func DefaultOptions() Options {
	return Options{
		HTTPAddr:    "127.0.0.1:8080",
		TunnelAddr:  "127.0.0.1:8081",
		AdminAddr:   "127.0.0.1:8082",
		InspectAddr: "127.0.0.1:4040",
	}
}

// Run starts server, app and client and blocks until ctx is done.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := &http.Server{Handler: App(appLn.Addr().String()), ReadHeaderTimeout: 10 * time.Second}
	go app.Serve(appLn)
	defer app.Close()

	cfg := server.DefaultConfig()
	cfg.NoAuth = true
	cfg.Domain = "localhost"
	cfg.HTTPAddr = o.pick("http-addr", o.HTTPAddr, log)
	cfg.TunnelAddr = o.pick("tunnel-addr", o.TunnelAddr, log)
	cfg.AdminAddr = o.pick("admin-addr", o.AdminAddr, log)
	cfg.HTTP.ShutdownTimeout = 2_000_000_000
	srv, err := server.New(cfg, server.Deps{Logger: log.With("side", "server"), Version: o.Version})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}

	ccfg := client.DefaultConfig()
	ccfg.Servers = []string{"ws://" + srv.TunnelAddr().String()}
	ccfg.InspectAddr = o.InspectAddr
	c, err := client.New(ccfg, []client.Spec{{Name: "demo", Config: client.TunnelConfig{Proto: "http", Addr: appLn.Addr().String()}}},
		client.Deps{
			Logger:    log.With("side", "client"),
			Version:   o.Version,
			Inspector: o.Inspector,
			OnEvent: func(e client.Event) {
				if e.Kind == client.EventForwarding && o.OnForwarding != nil {
					o.OnForwarding(e.Tunnel)
				}
			},
		})
	if err != nil {
		srv.Shutdown()
		return err
	}
	if o.OnClient != nil {
		o.OnClient(c)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(cctx) }()
	select {
	case <-ctx.Done():
		cancel()
		<-errc
	case err = <-errc:
	}
	srv.Shutdown()
	var fe *client.FinalError
	if errors.As(err, &fe) {
		return fmt.Errorf("demo client stopped: %w", err)
	}
	return nil
}

// pick returns addr, or a free port on the same host when addr is a busy
// default.
func (o Options) pick(flag, addr string, log *slog.Logger) string {
	if o.Explicit[flag] {
		return addr
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	log.Warn("default address busy, using a free port instead", "flag", "--"+flag, "addr", addr)
	return net.JoinHostPort(host, "0")
}
