package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/porthole/porthole/internal/server"
)

// serverDeps opens what the server needs besides its config: TLS material
// and, unless --no-auth, the user store behind authentication.
func serverDeps(ctx context.Context, cfg *server.Config, log *slog.Logger) (server.Deps, func(), error) {
	deps := server.Deps{Logger: log}
	tc, err := server.LoadTLS(cfg)
	if err != nil {
		return deps, nil, err
	}
	deps.TLS = tc
	if cfg.NoAuth {
		return deps, func() {}, nil
	}
	return deps, nil, errors.New("authentication needs the user store; run with --no-auth for now")
}
