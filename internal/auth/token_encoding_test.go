package auth

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// respellings returns raw with its signature's last character replaced by
// every other base64url character: the ones that differ only in spare bits
// decode to the same signature.
func respellings(raw string) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []string
	for _, c := range alphabet {
		if m := raw[:len(raw)-1] + string(c); m != raw {
			out = append(out, m)
		}
	}
	return out
}

// TestTokenRespelledRefused: a token is accepted only as issued. Another
// spelling of its signature (the same bytes in base64 with other spare
// bits) was accepted, and a token without a jti, revoked by its hash,
// came back under the new spelling's hash.
func TestTokenRespelledRefused(t *testing.T) {
	secret := "hs-secret-0123456789abcdef0123456789abcdef"
	svc, st, _ := newService(t, Config{FailedAuthBurst: 1 << 20, FailedAuthPerMinute: 1 << 20, Issuers: []IssuerConfig{
		{Issuer: "hs", Audience: []string{"porthole"}, Algorithms: []string{"HS256"}, Secret: secret},
	}})
	ctx := context.Background()
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	auth := func(raw string) error {
		_, err := svc.Authenticate(ctx, Credentials{Token: raw, RemoteAddr: "192.0.2.1:1"})
		return err
	}

	own, err := svc.IssueToken(ctx, "alice", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An external token without a jti: revoked by its hash.
	exp := time.Now().Add(time.Hour)
	ext := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"iss": "hs", "aud": "porthole", "sub": "alice", "exp": exp.Unix()}, "")
	for _, tok := range []string{own.Token, ext} {
		if err := auth(tok); err != nil {
			t.Fatalf("the token as issued: %v", err)
		}
		for _, m := range respellings(tok) {
			if err := auth(m); err == nil {
				t.Fatalf("%s...%s accepted, respelled from %s...%s", m[:10], m[len(m)-4:], tok[:10], tok[len(tok)-4:])
			} else if strings.Contains(err.Error(), m) {
				t.Fatalf("the refusal quotes the token: %v", err)
			}
		}
	}

	id, sub, until, err := TokenRevocation(ext)
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("TokenRevocation: %q, %v", id, err)
	}
	// Revoked from another spelling of the same signature, the record
	// matches the token as issued.
	same := 0
	for _, m := range respellings(ext) {
		if sigBytes(m) != sigBytes(ext) {
			continue
		}
		same++
		if mid, _, _, err := TokenRevocation(m); err != nil || mid != id {
			t.Fatalf("a respelling revokes %s (%v), the token is %s", mid, err, id)
		}
	}
	if same == 0 {
		t.Fatal("no respelling decodes to the same signature: the test proves nothing")
	}
	if err := st.RevokeToken(ctx, id, sub, until); err != nil {
		t.Fatal(err)
	}
	if err := auth(ext); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked token: %v", err)
	}
	for _, m := range respellings(ext) {
		if err := auth(m); err == nil {
			t.Fatalf("the revoked token came back respelled as ...%s", m[len(m)-4:])
		}
	}
}

func sigBytes(raw string) string {
	b, _ := base64.RawURLEncoding.DecodeString(raw[strings.LastIndexByte(raw, '.')+1:])
	return string(b)
}
