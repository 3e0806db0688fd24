package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/certs"
	"github.com/porthole/porthole/internal/cluster"
	"github.com/porthole/porthole/internal/cluster/link"
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
	clustered := cfg.Cluster.Addr != ""
	if !cfg.NoAuth || clustered {
		// A cluster node opens the store with --no-auth too: opening it
		// creates the cluster's tables.
		dbURL, err := cfg.DatabaseURL()
		if err != nil {
			return deps, nil, err
		}
		st, err = store.Open(ctx, dbURL, cfg.DataDir)
		if err != nil {
			return deps, nil, err
		}
		closeAll = func() { st.Close() }
		deps.Ready = st.Ping
		log.Info("store opened", "backend", st.Backend())
	}
	if !cfg.NoAuth {
		svc, err := auth.New(cfg.Auth, auth.Options{Store: st, DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			closeAll()
			return deps, nil, err
		}
		policy = auth.NewPolicy(cfg.Auth, auth.PolicyOptions{Store: st, Logger: log})
		deps.Auth, deps.Policy = svc, policy
	}
	if clustered {
		cd, err := joinCluster(ctx, cfg, log)
		if err != nil {
			closeAll()
			return deps, nil, err
		}
		deps.Cluster = cd
		closeStore := closeAll
		// The server leaves the cluster when it stops; this covers a
		// start that fails before, so that the node's name is free again
		// at once.
		closeAll = func() {
			cd.Node.Leave(context.Background())
			closeStore()
		}
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

// joinCluster reads the shared secret and makes this server a node of
// the cluster in its database.
func joinCluster(ctx context.Context, cfg *server.Config, log *slog.Logger) (*server.ClusterDeps, error) {
	secret, err := os.ReadFile(cfg.Cluster.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	secret = bytes.TrimSpace(secret)
	if err := link.ValidateSecret(secret); err != nil {
		return nil, fmt.Errorf("cluster secret %s: %w", cfg.Cluster.SecretFile, err)
	}
	dbURL, err := cfg.DatabaseURL()
	if err != nil {
		return nil, err
	}
	node, err := cluster.Join(ctx, cluster.Config{
		DatabaseURL: dbURL,
		Name:        cfg.Cluster.Name(),
		Addr:        cfg.Cluster.AdvertiseAddr(),
		Grace:       cfg.Tunnel.GracePeriod.D(),
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	return &server.ClusterDeps{Node: node, Secret: secret}, nil
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
