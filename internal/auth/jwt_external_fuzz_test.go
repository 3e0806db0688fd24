package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fuzzSigner signs a token's first two parts the way one key would.
type fuzzSigner struct {
	alg, kid, issuer string
	// trusted: the server holds this key for issuer.
	trusted bool
	sign    func(input []byte) []byte
}

// FuzzExternalToken signs arbitrary header and claims JSON with keys of
// external issuers the server trusts (an HS256 secret, Ed25519 and P-256
// keys from a JWK Set file) and with keys it does not, then mangles the
// signature or sends the header text as the whole token. No panic; every
// refusal has a reason that does not quote the token; and a token that
// passes was signed by a trusted key of the issuer it names, exactly as
// spelled, with the algorithm and key id of that key, an audience the
// issuer accepts, an expiry in the future, a not-before in the past, and a
// user that exists.
func FuzzExternalToken(f *testing.F) {
	dir := f.TempDir()
	secret := []byte("hs-secret-0123456789abcdef0123456789abcdef")
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, edOther, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPoint, _ := ecKey.PublicKey.Bytes()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": enc64(edPub)},
		{"kty": "EC", "kid": "ec", "crv": "P-256", "x": enc64(ecPoint[1:33]), "y": enc64(ecPoint[33:])},
	}})
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		f.Fatal(err)
	}
	audiences := map[string][]string{"hs": {"porthole"}, "jwks": {"porthole", "tunnels"}}
	svc, st, _ := newService(f, Config{FailedAuthBurst: 1 << 30, FailedAuthPerMinute: 1 << 30, Issuers: []IssuerConfig{
		{Issuer: "hs", Audience: audiences["hs"], Algorithms: []string{"HS256"}, Secret: string(secret)},
		{Issuer: "jwks", Audience: audiences["jwks"], Algorithms: []string{"EdDSA", "ES256"}, JWKSFile: jwksFile},
	}})
	ctx := context.Background()
	if _, err := st.CreateUser(ctx, "alice"); err != nil {
		f.Fatal(err)
	}
	hs := func(key []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, key); m.Write(in); return m.Sum(nil) }
	}
	ed := func(k ed25519.PrivateKey) func([]byte) []byte {
		return func(in []byte) []byte { return ed25519.Sign(k, in) }
	}
	es := func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, _ := ecdsa.Sign(rand.Reader, ecKey, h[:])
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	signers := []fuzzSigner{
		{alg: "HS256", issuer: "hs", trusted: true, sign: hs(secret)},
		{alg: "EdDSA", kid: "ed", issuer: "jwks", trusted: true, sign: ed(edPriv)},
		{alg: "ES256", kid: "ec", issuer: "jwks", trusted: true, sign: es},
		{alg: "EdDSA", kid: "ed", issuer: "jwks", sign: ed(edOther)},
		{alg: "HS256", issuer: "hs", sign: hs([]byte("another-secret-0123456789abcdef0123456789"))},
		// Algorithm confusion: the public key as an HMAC secret.
		{alg: "HS256", issuer: "jwks", sign: hs(edPub)},
	}
	build := func(header, claims string, s fuzzSigner) string {
		in := enc64([]byte(header)) + "." + enc64([]byte(claims))
		return in + "." + enc64(s.sign([]byte(in)))
	}
	const far = "4102444800" // 2100-01-01
	good := map[string]string{
		"hs":   `{"iss":"hs","aud":"porthole","sub":"alice","exp":` + far + `}`,
		"jwks": `{"iss":"jwks","aud":["x","tunnels"],"sub":"Alice","exp":` + far + `,"nbf":1,"jti":"j1"}`,
	}
	// Tokens the harness itself signed with trusted keys: the only ones
	// that may pass when sent as raw text.
	issued := map[string]bool{}
	for i, s := range signers[:3] {
		h := `{"alg":"` + s.alg + `","typ":"JWT","kid":"` + s.kid + `"}`
		tok := build(h, good[s.issuer], s)
		if _, err := svc.Authenticate(ctx, Credentials{Token: tok, RemoteAddr: "192.0.2.1:1"}); err != nil {
			f.Fatalf("a valid %s token is refused, the target would prove nothing: %v", s.alg, err)
		}
		issued[tok] = true
		f.Add(h, good[s.issuer], uint8(i), uint8(0))
		f.Add(tok, "", uint8(i), uint8(3))
	}
	f.Add(`{"alg":"HS256"}`, `{"iss":"hs","aud":"porthole","sub":"alice","exp":1}`, uint8(0), uint8(0))
	f.Add(`{"alg":"HS256"}`, `{"iss":"hs","aud":"nope","sub":"alice","exp":`+far+`}`, uint8(0), uint8(0))
	f.Add(`{"alg":"HS256"}`, `{"iss":"hs","aud":"porthole","sub":"bob","exp":`+far+`}`, uint8(0), uint8(0))
	f.Add(`{"alg":"HS256"}`, `{"iss":"hs","aud":"porthole","sub":"alice"}`, uint8(0), uint8(0))
	f.Add(`{"alg":"HS256"}`, `{"iss":"hs","aud":"porthole","sub":"alice","exp":`+far+`,"nbf":`+far+`}`, uint8(0), uint8(0))
	f.Add(`{"alg":"HS256"}`, good["hs"], uint8(0), uint8(1))
	f.Add(`{"alg":"HS256"}`, good["hs"], uint8(0), uint8(2))
	f.Add(`{"alg":"HS256"}`, good["hs"], uint8(4), uint8(0))
	f.Add(`{"alg":"HS256","kid":"ed"}`, good["jwks"], uint8(5), uint8(0))
	f.Add(`{"alg":"EdDSA","kid":"ec"}`, good["jwks"], uint8(1), uint8(0))
	f.Add(`{"alg":"EdDSA","kid":"ed"}`, good["jwks"], uint8(3), uint8(0))
	f.Add(`{"alg":"none"}`, good["hs"], uint8(0), uint8(0))
	f.Add(`{"alg":"ES256"}`, `{"iss":"jwks","aud":"tunnels","sub":"alice","exp":`+far+`,"subdomains":["a"],"tcp_ports":[1,"x"]}`, uint8(2), uint8(0))
	f.Add(`{"alg":"EdDSA"}`, `{"ISS":"hs","iss":"jwks","aud":"porthole","sub":"alice","exp":`+far+`}`, uint8(1), uint8(0))
	f.Add("a.b.c", "", uint8(0), uint8(3))

	f.Fuzz(func(t *testing.T, header, claims string, key, mangle uint8) {
		s := signers[int(key)%len(signers)]
		var tok string
		switch mangle % 4 {
		case 3:
			tok = header // arbitrary text as the token
		default:
			tok = build(header, claims, s)
			switch mangle % 4 {
			case 1: // another signature: its first character's top bit flipped
				i := strings.LastIndexByte(tok, '.') + 1
				if i < len(tok) {
					tok = tok[:i] + string(b64Alphabet[strings.IndexByte(b64Alphabet, tok[i])^32]) + tok[i+1:]
				}
			case 2: // the same signature, another spelling of its last character
				tok = respell(tok)
			}
		}
		before := time.Now()
		id, err := svc.Authenticate(ctx, Credentials{Token: tok, RemoteAddr: "192.0.2.1:1"})
		after := time.Now()
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a reason")
			}
			if len(tok) > 64 && strings.Contains(err.Error(), tok) {
				t.Fatalf("the refusal quotes the whole token: %v", err)
			}
			return
		}
		if mangle%4 == 3 {
			if !issued[tok] {
				t.Fatalf("a token the harness never signed passed: %q", tok)
			}
			return
		}
		if !s.trusted || mangle%4 != 0 {
			t.Fatalf("passed: signed by a key the server does not trust (%+v) or mangled (%d): %q", s, mangle%4, tok)
		}
		var h map[string]any
		if json.Unmarshal([]byte(header), &h) != nil || h["alg"] != s.alg {
			t.Fatalf("passed with header %q, signed %s", header, s.alg)
		}
		if kid, _ := h["kid"].(string); s.kid != "" && kid != "" && kid != s.kid {
			t.Fatalf("passed with key id %q, signed by %q", kid, s.kid)
		}
		var c map[string]any
		if json.Unmarshal([]byte(claims), &c) != nil {
			t.Fatalf("passed with claims that are not a JSON object: %q", claims)
		}
		if c["iss"] != s.issuer || id.Issuer != s.issuer {
			t.Fatalf("passed for issuer %v (identity %q), signed by %s's key", c["iss"], id.Issuer, s.issuer)
		}
		if !audienceOK(c["aud"], audiences[s.issuer]) {
			t.Fatalf("passed with audience %v, %s accepts %v", c["aud"], s.issuer, audiences[s.issuer])
		}
		leeway := 30 * time.Second
		exp, ok := c["exp"].(float64)
		if !ok || !before.Before(time.Unix(int64(exp), 0).Add(leeway+time.Second)) {
			t.Fatalf("passed with exp %v", c["exp"])
		}
		if nbf, present := c["nbf"]; present {
			n, ok := nbf.(float64)
			if !ok || time.Unix(int64(n), 0).After(after.Add(leeway+time.Second)) {
				t.Fatalf("passed with nbf %v", nbf)
			}
		}
		sub, _ := c["sub"].(string)
		if strings.ToLower(sub) != "alice" || id.User != "alice" {
			t.Fatalf("passed for sub %q as %q; only alice exists", sub, id.User)
		}
	})
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// respell changes the last character of a token to the one that differs
// in its lowest bit: a spare bit for every signature here (HS256's 32
// bytes, Ed25519's and ES256's 64 leave 2 or 4).
func respell(tok string) string {
	last := strings.IndexByte(b64Alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(b64Alphabet[last^1])
}

func audienceOK(aud any, accepted []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(accepted, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(accepted, s) {
				return true
			}
		}
	}
	return false
}
