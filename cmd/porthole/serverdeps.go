package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/certs"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/store"
)

// serverDeps opens what the server needs besides its config: TLS material
// and, unless --no-auth, the user store behind authentication and the
// naming policy. The returned function releases them.
func serverDeps(ctx context.Context, cfg *server.Config, log *slog.Logger) (server.Deps, func(), error) {
	deps := server.Deps{Logger: log}
	if err := cfg.Auth.Validate(); err != nil {
		return deps, nil, err
	}
	var (
		st     store.Store
		policy *auth.Policy
	)
	closeAll := func() {}
	if !cfg.NoAuth {
		dbURL, err := cfg.DatabaseURL()
		if err != nil {
			return deps, nil, err
		}
		st, err = store.Open(ctx, dbURL, cfg.DataDir)
		if err != nil {
			return deps, nil, err
		}
		svc, err := auth.New(cfg.Auth, auth.Options{Store: st, DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			st.Close()
			return deps, nil, err
		}
		policy = auth.NewPolicy(cfg.Auth, auth.PolicyOptions{Store: st, Logger: log})
		deps.Auth, deps.Policy, deps.Ready = svc, policy, st.Ping
		closeAll = func() { st.Close() }
		log.Info("user store opened", "backend", st.Backend())
	}
	// SIGHUP re-reads the certificate files (they are also polled).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	tdeps := server.TLSDeps{Logger: log, Reload: hup}
	if policy != nil {
		tdeps.Domains = certs.DomainCheckerFunc(policy.DomainAllowed)
	}
	ts, err := server.LoadTLS(ctx, cfg, tdeps)
	if err != nil {
		signal.Stop(hup)
		closeAll()
		return deps, nil, err
	}
	deps.TLS, deps.Certs = ts.Config, ts.Certs
	return deps, func() {
		signal.Stop(hup)
		ts.Close()
		closeAll()
	}, nil
}

// watchRevocations cuts off srv's sessions whose credential is revoked
// or whose user is deleted, also by another process (`porthole admin`) or
// another server sharing the database. It runs until ctx ends.
func watchRevocations(ctx context.Context, srv *server.Server, deps server.Deps) error {
	svc, ok := deps.Auth.(*auth.Service)
	if !ok {
		return nil // --no-auth: no credentials to revoke
	}
	w, err := auth.NewWatcher(ctx, svc.Store(), srv, svc.Config().RevocationPoll.D(), deps.Logger)
	if err != nil {
		return fmt.Errorf("revocation watcher: %w", err)
	}
	go w.Run(ctx)
	return nil
}
