package certs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzParsePin: a server pin from the client's flags or file either is
// refused or is a SHA-256 digest, which its printed forms (base64 as
// SPKIPin writes it, and hex with colons as openssl prints it) parse
// back to.
func FuzzParsePin(f *testing.F) {
	sum := sha256.Sum256([]byte("key"))
	for _, s := range []string{
		"sha256:" + base64.StdEncoding.EncodeToString(sum[:]),
		"sha256:" + base64.RawURLEncoding.EncodeToString(sum[:]),
		"SHA256:" + hex.EncodeToString(sum[:]),
		"sha256:" + strings.ToUpper(hex.EncodeToString(sum[:2])) + ":" + hex.EncodeToString(sum[2:]),
		" sha256:" + base64.StdEncoding.EncodeToString(sum[:]) + " ",
		"sha1:abc", "sha256:", "sha256:AAAA", "", ":",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParsePin(s)
		if err != nil {
			if d != ([sha256.Size]byte{}) {
				t.Fatalf("refused %q, yet returned a digest", s)
			}
			return
		}
		var colons []string
		for _, b := range d {
			colons = append(colons, hex.EncodeToString([]byte{b}))
		}
		for _, form := range []string{
			"sha256:" + base64.StdEncoding.EncodeToString(d[:]),
			"sha256:" + hex.EncodeToString(d[:]),
			"sha256:" + strings.Join(colons, ":"),
		} {
			if again, err := ParsePin(form); err != nil || again != d {
				t.Fatalf("%q parsed, but its form %q gives %x, %v", s, form, again, err)
			}
		}
	})
}
