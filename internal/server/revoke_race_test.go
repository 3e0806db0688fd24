package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/tunneltest"
)

// holdingAuth runs the real authenticator, then holds the first
// successful check until the test lets it go: the window between the
// credential check and the session's registration, made as wide as a
// test needs.
type holdingAuth struct {
	auth.Authenticator
	once    sync.Once
	checked chan struct{}
	release chan struct{}
}

func (h *holdingAuth) Authenticate(ctx context.Context, c auth.Credentials) (*auth.Identity, error) {
	id, err := h.Authenticator.Authenticate(ctx, c)
	if err == nil {
		h.once.Do(func() {
			close(h.checked)
			<-h.release
		})
	}
	return id, err
}

// TestRevokedDuringHandshake: a key is revoked, and the revocation
// applied by the server, after the key was checked but before its
// session registered. The session must not outlive the key: the client
// is refused and exits saying the key was revoked.
func TestRevokedDuringHandshake(t *testing.T) {
	hold := &holdingAuth{checked: make(chan struct{}), release: make(chan struct{})}
	srv := startIDServer(t, idOptions{noWatcher: true, wrap: func(a auth.Authenticator) auth.Authenticator {
		hold.Authenticator = a
		return hold
	}})
	ctx := context.Background()
	// The watcher is stepped by hand, so the revocation is applied at a
	// known point.
	w, err := auth.NewWatcher(ctx, srv.Store, srv.Server, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, keyID := srv.user(t, "alice")
	app := startApp(t, nil)
	c := tunneltest.StartClient(t, srv.clientConfig(key, ""), tunneltest.HTTP("web", app.URL))

	<-hold.checked
	if err := srv.Store.RevokeAPIKey(ctx, keyID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	close(hold.release)

	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("the client of a key revoked during its handshake still runs after 5 s (sessions: %d)", srv.sessions())
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("client ended with %v, want a final error saying the key was revoked", err)
	}
	if n := srv.sessions(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}
