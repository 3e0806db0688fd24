package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

// FuzzToken presents arbitrary strings as tunnel tokens to a service
// with its own signing key and a real SQLite store, seeded with a valid
// token and its mangled forms: no panic; every refusal has a reason that
// never quotes more than a clipped part of the token; only a token
// byte-for-byte as issued (its signature covers the rest) is accepted,
// for the user it names.
func FuzzToken(f *testing.F) {
	svc, _, _ := newService(f, Config{FailedAuthBurst: 1 << 30, FailedAuthPerMinute: 1 << 30})
	ctx := context.Background()
	if _, err := svc.Store().CreateUser(ctx, "alice"); err != nil {
		f.Fatal(err)
	}
	tok, err := svc.IssueToken(ctx, "alice", time.Hour, nil)
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(tok.Token, ".")
	f.Add(tok.Token)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	f.Add(strings.Repeat("A", 5000))
	f.Add("a.b.c.d")
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := svc.Authenticate(ctx, Credentials{Token: raw, RemoteAddr: "192.0.2.1:1"})
		if err != nil {
			msg := err.Error()
			if msg == "" {
				t.Fatal("refusal without a reason")
			}
			if len(raw) > 64 && strings.Contains(msg, raw) {
				t.Fatalf("the refusal quotes the whole token: %q", msg)
			}
			return
		}
		if raw != tok.Token {
			t.Fatalf("a token other than the one issued was accepted: %q", raw)
		}
		if id.User != "alice" || id.Method != MethodToken {
			t.Fatalf("identity %+v", id)
		}
	})
}
