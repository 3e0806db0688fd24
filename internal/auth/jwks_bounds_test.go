package auth

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJWKSBounds: a jwks_file larger than 1 MiB, with more than 100 keys,
// or with an RSA modulus past 16384 bits is refused when the server
// starts, with a reason; each was loaded before.
func TestJWKSBounds(t *testing.T) {
	edKey := `{"kty":"OKP","crv":"Ed25519","kid":"%s","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`
	manyKeys := make([]string, maxJWKSKeys+1)
	for i := range manyKeys {
		manyKeys[i] = fmt.Sprintf(edKey, fmt.Sprint(i))
	}
	bigN := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("\xff", maxRSABits/8+1)))
	for _, c := range []struct{ name, set, want string }{
		{"padded to 1 MiB", `{"keys":[` + fmt.Sprintf(edKey, "a") + `]` + strings.Repeat(" ", maxJWKSBytes) + `}`, "larger than 1024 KiB"},
		{"101 keys", `{"keys":[` + strings.Join(manyKeys, ",") + `]}`, "holds 101 keys, more than 100"},
		{"16392-bit RSA", `{"keys":[{"kty":"RSA","kid":"r","e":"AQAB","n":"` + bigN + `"}]}`, "too long (at most 16384)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "jwks.json")
			if err := os.WriteFile(file, []byte(c.set), 0o600); err != nil {
				t.Fatal(err)
			}
			alg := "EdDSA"
			if strings.Contains(c.set, `"RSA"`) {
				alg = "RS256"
			}
			st, dir := openStore(t)
			_, err := New(Config{Issuers: []IssuerConfig{{Issuer: "ext", Audience: []string{"porthole"}, Algorithms: []string{alg}, JWKSFile: file}}}, Options{Store: st, DataDir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}
