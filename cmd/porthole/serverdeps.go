package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/porthole/porthole/internal/server"
)

// serverDeps opens what the server needs besides its config: TLS material
// and, unless --no-auth, the user store behind authentication.
func serverDeps(ctx context.Context, cfg *server.Config, log *slog.Logger) (server.Deps, func(), error) {
	deps := server.Deps{Logger: log}
	// SIGHUP re-reads the certificate files (they are also polled).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ts, err := server.LoadTLS(ctx, cfg, server.TLSDeps{Logger: log, Reload: hup})
	if err != nil {
		return deps, nil, err
	}
	deps.TLS, deps.Certs = ts.Config, ts.Certs
	if cfg.NoAuth {
		return deps, func() {}, nil
	}
	return deps, nil, errors.New("authentication needs the user store; run with --no-auth for now")
}
