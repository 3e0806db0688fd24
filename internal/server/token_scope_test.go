package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/store"
)

// TestTokenScopeCoversEveryNameKind: tokens issued by the server's own
// code, each with a scope, try to bind names of every kind. A token for
// one subdomain can open no TCP tunnel and bind no verified custom
// domain of its user; TCP and hostnames need their own grant.
func TestTokenScopeCoversEveryNameKind(t *testing.T) {
	lo, hi := freePortRange(t, 4)
	srv := startIDServer(t, idOptions{cfg: func(c *server.Config) {
		c.TCPPorts = fmt.Sprintf("%d-%d", lo, hi)
		c.Tunnel.GracePeriod = 0 // each case's names are free for the next
	}})
	srv.user(t, "alice")
	ctx := context.Background()
	for _, h := range []string{"app.example.org", "other.example.org"} {
		if _, err := srv.Store.AddDomain(ctx, store.Domain{Hostname: h, User: "alice", Token: "t"}); err != nil {
			t.Fatal(err)
		}
		if err := srv.Store.SetDomainVerified(ctx, h, true, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tcp := func(port int) protocol.Bind { return protocol.Bind{Kind: "tcp", RemotePort: port} }
	sub := func(name string) protocol.Bind { return protocol.Bind{Kind: "http", Subdomain: name} }
	host := func(name string) protocol.Bind { return protocol.Bind{Kind: "http", Hostname: name} }
	random := protocol.Bind{Kind: "http"}
	for _, tc := range []struct {
		name    string
		scope   *auth.Scope
		allowed []protocol.Bind
		refused []protocol.Bind
	}{
		{"one subdomain", &auth.Scope{Subdomains: []string{"web1"}},
			[]protocol.Bind{sub("web1")},
			[]protocol.Bind{tcp(0), tcp(lo), host("app.example.org"), random, sub("other")}},
		{"one hostname", &auth.Scope{Hostnames: []string{"app.example.org"}},
			[]protocol.Bind{host("app.example.org")},
			[]protocol.Bind{host("other.example.org"), sub("web2"), random, tcp(0)}},
		{"any TCP port", &auth.Scope{TCP: true},
			[]protocol.Bind{tcp(lo + 1), tcp(0)},
			[]protocol.Bind{sub("web3"), random, host("app.example.org")}},
		{"one TCP port", &auth.Scope{Subdomains: []string{"web4"}, TCPPorts: []int{lo + 2}},
			[]protocol.Bind{tcp(0), sub("web4")},
			[]protocol.Bind{tcp(lo + 3), host("app.example.org")}},
		{"unrestricted", nil,
			[]protocol.Bind{sub("web5"), random, host("other.example.org"), tcp(0)},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := srv.Auth.IssueToken(ctx, "alice", time.Hour, tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			rs := srv.dialAs(t, tok.Token)
			id := uint32(0)
			for _, b := range tc.refused {
				id++
				b.ID = id
				if bound, e := rs.bind(t, b); e == nil || e.Code != protocol.CodeForbidden || !e.Final || !strings.Contains(e.Message, "scope") {
					t.Errorf("bind %s/%s/%s/%d: got %+v %+v, want forbidden by the scope", b.Kind, b.Subdomain, b.Hostname, b.RemotePort, bound, e)
				}
			}
			for _, b := range tc.allowed {
				id++
				b.ID = id
				if bound, e := rs.bind(t, b); e != nil {
					t.Errorf("bind %s/%s/%s/%d: %v, want it bound", b.Kind, b.Subdomain, b.Hostname, b.RemotePort, e)
				} else if len(bound.URLs) == 0 {
					t.Errorf("bound without URL: %+v", bound)
				}
			}
			rs.mux.Close()
			waitFor(t, "the session to end", func() bool { return srv.sessions() == 0 })
		})
	}
	// A scope that grants nothing is not issued.
	if _, err := srv.Auth.IssueToken(ctx, "alice", time.Hour, &auth.Scope{}); err == nil {
		t.Fatal("a token with an empty scope was issued")
	}
}
