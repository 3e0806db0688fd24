package server_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/store"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestCustomDomainChangesStopTunnels: while alice's tunnel serves her
// verified custom domain, an operator (from another process's store
// handle, as `porthole admin` is) removes the domain, gives it to bob, or
// it loses its verification. Within 5 s the tunnel stops serving it and
// alice's client exits with the reason.
func TestCustomDomainChangesStopTunnels(t *testing.T) {
	srv := startIDServer(t, idOptions{})
	key, _ := srv.user(t, "alice")
	srv.user(t, "bob")
	ctx := context.Background()
	admin, err := store.Open(ctx, "sqlite:"+filepath.Join(srv.DataDir, "porthole.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alice's app") })
	vis := srv.visitor(t)
	get := func(host string) int {
		resp, _, err := tunneltest.Get(vis, "http://"+host+"/")
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	addVerified := func(host, user string) {
		if _, err := admin.AddDomain(ctx, store.Domain{Hostname: host, User: user, Token: "t"}); err != nil {
			t.Fatal(err)
		}
		if err := admin.SetDomainVerified(ctx, host, true, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, host string
		change     func(host string)
		reason     string
	}{
		{"removed", "removed.example.org", func(h string) {
			if err := admin.RemoveDomain(ctx, h); err != nil {
				t.Fatal(err)
			}
		}, "was removed"},
		{"reassigned", "moved.example.org", func(h string) {
			if err := admin.RemoveDomain(ctx, h); err != nil {
				t.Fatal(err)
			}
			addVerified(h, "bob")
		}, "another user"},
		{"unverified", "lapsed.example.org", func(h string) {
			if err := admin.SetDomainVerified(ctx, h, false, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, "no longer verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addVerified(tc.host, "alice")
			spec := client.Spec{Name: "web", Config: client.TunnelConfig{Proto: "http", Addr: app.URL, Hostname: tc.host}}
			c := tunneltest.StartClient(t, srv.clientConfig(key, ""), spec)
			c.WaitURL(t, "web")
			if code := get(tc.host); code != 200 {
				t.Fatalf("before the change: %d", code)
			}
			tc.change(tc.host)
			deadline := time.Now().Add(5 * time.Second)
			for get(tc.host) == 200 {
				if time.Now().After(deadline) {
					t.Fatalf("%s still serves alice's tunnel 5 s after the domain was %s", tc.host, tc.name)
				}
				time.Sleep(50 * time.Millisecond)
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("alice's client still runs")
			}
			if err := c.Err(); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("client ended with %v, want the reason %q", err, tc.reason)
			}
		})
	}
	// Bob, the new owner, binds the reassigned domain.
	bobKey, _ := srv.user(t, "bob")
	spec := client.Spec{Name: "web", Config: client.TunnelConfig{Proto: "http", Addr: app.URL, Hostname: "moved.example.org"}}
	c := tunneltest.StartClient(t, srv.clientConfig(bobKey, ""), spec)
	c.WaitURL(t, "web")
	if code := get("moved.example.org"); code != 200 {
		t.Fatalf("bob's tunnel on the reassigned domain: %d", code)
	}
}

// holdingPolicy runs the real policy and holds the first custom domain
// check that passes until the test lets it go.
type holdingPolicy struct {
	server.Policy
	once    sync.Once
	checked chan struct{}
	release chan struct{}
}

func (h *holdingPolicy) CheckHostname(ctx context.Context, id *auth.Identity, host string) error {
	err := h.Policy.CheckHostname(ctx, id, host)
	if err == nil {
		h.once.Do(func() {
			close(h.checked)
			<-h.release
		})
	}
	return err
}

// TestCustomDomainRemovedDuringBind: the domain is removed, and the
// removal applied by the server, after a bind checked it and before the
// name was claimed. The bind is refused rather than serve the domain for
// good.
func TestCustomDomainRemovedDuringBind(t *testing.T) {
	hold := &holdingPolicy{checked: make(chan struct{}), release: make(chan struct{})}
	srv := startIDServer(t, idOptions{noWatcher: true, wrapPolicy: func(p server.Policy) server.Policy {
		hold.Policy = p
		return hold
	}})
	ctx := context.Background()
	w, err := auth.NewWatcher(ctx, srv.Store, srv.Server, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := srv.user(t, "alice")
	if _, err := srv.Store.AddDomain(ctx, store.Domain{Hostname: "app.example.org", User: "alice", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.SetDomainVerified(ctx, "app.example.org", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	rs := srv.dialAs(t, key)
	type answer struct {
		b *protocol.Bound
		e *protocol.Error
	}
	got := make(chan answer, 1)
	go func() {
		b, e := rs.bind(t, protocol.Bind{ID: 1, Kind: "http", Hostname: "app.example.org"})
		got <- answer{b, e}
	}()
	<-hold.checked
	if err := srv.Store.RemoveDomain(ctx, "app.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	close(hold.release)
	a := <-got
	if a.e == nil || a.e.Code != protocol.CodeForbidden {
		t.Fatalf("bind of a domain removed while it was checked: %+v %+v, want forbidden", a.b, a.e)
	}
	resp, _, err := tunneltest.Get(srv.visitor(t), "http://app.example.org/")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("visitor: %v %v, want 404", statusOf(resp), err)
	}
}
