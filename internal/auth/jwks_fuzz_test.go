package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"strings"
	"testing"
)

// FuzzJWKS parses arbitrary JWK Sets as an external issuer's jwks_url or
// file serves them: no panic; a set is either refused with a reason or
// yields at most 100 usable public keys (RSA of 2048 to 16384 bits with a
// valid exponent, EC points on their curve, Ed25519 keys of the right
// size), never a private key; a set over 1 MiB is refused.
func FuzzJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"sXch","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"` + strings.Repeat("A", 344) + `","e":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err == nil && (len(data) > maxJWKSBytes || len(keys) > maxJWKSKeys) {
			t.Fatalf("accepted %d keys in %d bytes", len(keys), len(data))
		}
		if err != nil {
			if keys != nil || err.Error() == "" {
				t.Fatalf("refused with keys %v, error %q", keys, err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("accepted a set without keys")
		}
		for kid, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				if k.N.BitLen() < 2048 || k.N.BitLen() > maxRSABits || k.E < 3 || k.E%2 == 0 {
					t.Fatalf("key %q: weak or invalid RSA key (%d bits, e=%d)", kid, k.N.BitLen(), k.E)
				}
			case *ecdsa.PublicKey:
				if _, err := k.Bytes(); err != nil {
					t.Fatalf("key %q: EC point not on its curve: %v", kid, err)
				}
			case ed25519.PublicKey:
				if len(k) != ed25519.PublicKeySize {
					t.Fatalf("key %q: Ed25519 key of %d bytes", kid, len(k))
				}
			default:
				t.Fatalf("key %q: unexpected type %T", kid, k)
			}
		}
	})
}
