package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// SPKIPin returns the certificate's public key pin: "sha256:" and the
// base64 SHA-256 of its SubjectPublicKeyInfo, the form of RFC 7469 (and of
// `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl
// dgst -sha256 -binary | base64`). The pin survives re-issuing a
// certificate for the same key.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + base64.StdEncoding.EncodeToString(sum[:])
}

// SPKIDigest returns the SHA-256 of the certificate's SubjectPublicKeyInfo.
func SPKIDigest(c *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(c.RawSubjectPublicKeyInfo)
}

// ParsePin parses "sha256:" followed by the digest in base64 (standard or
// URL alphabet, padded or not) or in hex (colons allowed, as openssl
// prints fingerprints).
func ParsePin(s string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	alg, v, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || !strings.EqualFold(alg, "sha256") {
		return out, fmt.Errorf("pin %q: want sha256:BASE64 or sha256:HEX", s)
	}
	if h := strings.ReplaceAll(v, ":", ""); len(h) == 2*sha256.Size {
		if b, err := hex.DecodeString(h); err == nil {
			copy(out[:], b)
			return out, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == sha256.Size {
			copy(out[:], b)
			return out, nil
		}
	}
	return out, fmt.Errorf("pin %q: the part after sha256: is not a 32-byte digest in base64 or hex", s)
}
