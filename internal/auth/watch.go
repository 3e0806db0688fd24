package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/porthole/porthole/internal/store"
)

// Revoker ends live sessions; the server implements it.
type Revoker interface {
	// Revoke ends the sessions authenticated with the credential
	// credentialID (Identity.RevokedBy).
	Revoke(credentialID, reason string) int
	// RevokeUser ends all of user's sessions.
	RevokeUser(user, reason string) int
	// RevokeMatching ends the sessions whose identity match accepts.
	RevokeMatching(match func(*Identity) bool, reason string) int
	// ReleaseHostname ends the sessions serving the custom hostname host
	// whose user keep does not accept (nil: every user).
	ReleaseHostname(host, reason string, keep func(user string) bool) int
}

// Watcher follows the store's change log and cuts off sessions whose
// credential was revoked or whose user was deleted, and tunnels serving a
// custom domain that was removed, reassigned or un-verified, whichever
// process made the change: it polls every Poll and, with PostgreSQL, also
// wakes on NOTIFY.
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

// Step applies the changes logged since the last step. A change that
// needs the store's current state and cannot read it is retried at the
// next step, with those after it.
func (w *Watcher) Step(ctx context.Context) error {
	for {
		cs, err := w.st.ChangesSince(ctx, w.last, 500)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if err := w.apply(ctx, c); err != nil {
				return err
			}
			w.last = c.Seq
		}
		if len(cs) < 500 {
			return nil
		}
	}
}

func (w *Watcher) apply(ctx context.Context, c store.Change) error {
	var n int
	switch c.Kind {
	case store.ChangeKeyRevoked:
		n = w.rv.Revoke(c.Subject, "API key "+c.Subject+" was revoked")
	case store.ChangeTokenRevoked:
		n = w.rv.Revoke("jwt:"+c.Subject, "the token was revoked")
	case store.ChangeCertRevoked:
		n = w.rv.Revoke("cert:"+c.Subject, "the client certificate was revoked")
	case store.ChangeUserDeleted:
		n = w.rv.RevokeUser(c.Subject, "user "+c.Subject+" was deleted")
	case store.ChangeTokenCutoff:
		iss, user := store.ParseCutoffSubject(c.Subject)
		cutoff, err := w.st.TokenCutoff(ctx, iss, user)
		if err != nil {
			return err
		}
		n = w.rv.RevokeMatching(func(id *Identity) bool {
			return id.Method == MethodToken && id.Issuer == iss && (user == "" || id.User == user) && id.IssuedBefore(cutoff)
		}, "tokens issued before "+cutoff.UTC().Format(time.RFC3339)+" were revoked")
	case store.ChangeDomainRemoved, store.ChangeDomainChanged:
		// What the domain is now decides who may go on serving it: no
		// one when it is gone or unverified, else only its owner.
		host := c.Subject
		var keep func(string) bool
		reason := "custom domain " + host + " was removed"
		d, err := w.st.GetDomain(ctx, host)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case d.Verified():
			owner := d.User
			keep = func(user string) bool { return user == owner }
			reason = "custom domain " + host + " was given to another user"
		default:
			reason = "custom domain " + host + " is no longer verified"
		}
		n = w.rv.ReleaseHostname(strings.ToLower(host), reason, keep)
	default:
		return nil
	}
	if n > 0 {
		w.log.Info("revocation applied", "change", string(c.Kind), "subject", logSubject(c), "sessions", n)
	}
	return nil
}

// logSubject names a change's subject for the log; a token's hash is not
// logged.
func logSubject(c store.Change) string {
	if strings.HasPrefix(c.Subject, "sha256:") && c.Kind == store.ChangeTokenRevoked {
		return "(token without id)"
	}
	return strings.ReplaceAll(c.Subject, "\n", " ")
}
