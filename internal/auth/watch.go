package auth

import (
	"context"
	"log/slog"
	"time"

	"github.com/porthole/porthole/internal/store"
)

// Revoker ends live sessions; the server implements it.
type Revoker interface {
	// Revoke ends the sessions authenticated with credentialID.
	Revoke(credentialID, reason string) int
	// RevokeUser ends all of user's sessions.
	RevokeUser(user, reason string) int
}

// Watcher follows the store's change log and cuts off sessions whose
// credential was revoked or whose user was deleted, whichever process made
// the change: it polls every Poll and, with PostgreSQL, also wakes on
// NOTIFY.
type Watcher struct {
	st   store.Store
	rv   Revoker
	log  *slog.Logger
	poll time.Duration
	last int64
}

// NewWatcher starts following the change log from its current end, so
// that it reacts to changes made from now on: sessions authenticated
// afterwards were checked against the current state.
func NewWatcher(ctx context.Context, st store.Store, rv Revoker, poll time.Duration, log *slog.Logger) (*Watcher, error) {
	last, err := st.LastChange(ctx)
	if err != nil {
		return nil, err
	}
	if poll <= 0 {
		poll = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{st: st, rv: rv, log: log, poll: poll, last: last}, nil
}

// Run follows the log until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	var notify <-chan struct{}
	if n, ok := w.st.(store.Notifier); ok {
		notify = n.Notify(ctx)
	}
	t := time.NewTicker(w.poll)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-notify:
		}
		if err := w.Step(ctx); err != nil {
			if !failing && ctx.Err() == nil {
				w.log.Warn("cannot read revocations from the store; retrying", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			w.log.Info("reading revocations from the store again")
			failing = false
		}
	}
}

// Step applies the changes logged since the last step.
func (w *Watcher) Step(ctx context.Context) error {
	for {
		cs, err := w.st.ChangesSince(ctx, w.last, 500)
		if err != nil {
			return err
		}
		for _, c := range cs {
			w.apply(c)
			w.last = c.Seq
		}
		if len(cs) < 500 {
			return nil
		}
	}
}

func (w *Watcher) apply(c store.Change) {
	var n int
	switch c.Kind {
	case store.ChangeKeyRevoked:
		n = w.rv.Revoke(c.Subject, "API key "+c.Subject+" was revoked")
	case store.ChangeTokenRevoked:
		n = w.rv.Revoke("jwt:"+c.Subject, "the token was revoked")
	case store.ChangeUserDeleted:
		n = w.rv.RevokeUser(c.Subject, "user "+c.Subject+" was deleted")
	default:
		return
	}
	if n > 0 {
		w.log.Info("revocation applied", "change", string(c.Kind), "subject", c.Subject, "sessions", n)
	}
}
