package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParsePin(t *testing.T) {
	sum := sha256.Sum256([]byte("key"))
	hx := hex.EncodeToString(sum[:])
	var colons []string
	for i := 0; i < len(hx); i += 2 {
		colons = append(colons, strings.ToUpper(hx[i:i+2]))
	}
	good := []string{
		"sha256:" + base64.StdEncoding.EncodeToString(sum[:]),
		"sha256:" + base64.RawStdEncoding.EncodeToString(sum[:]),
		"sha256:" + base64.URLEncoding.EncodeToString(sum[:]),
		"SHA256:" + hx,
		"sha256:" + strings.Join(colons, ":"),
		"  sha256:" + hx + "\n",
	}
	for _, s := range good {
		got, err := ParsePin(s)
		if err != nil || got != sum {
			t.Errorf("ParsePin(%q) = %x, %v; want %x", s, got, err, sum)
		}
	}
	bad := []string{"", hx, "sha1:" + hx, "sha256:", "sha256:" + hx[:62], "sha256:not-base64!", "sha256:" + base64.StdEncoding.EncodeToString(sum[:16])}
	for _, s := range bad {
		if _, err := ParsePin(s); err == nil {
			t.Errorf("ParsePin(%q) accepted", s)
		}
	}
}

func TestSPKIPinRoundTrip(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	c := &x509.Certificate{RawSubjectPublicKeyInfo: der}
	d, err := ParsePin(SPKIPin(c))
	if err != nil || d != SPKIDigest(c) || d != sha256.Sum256(der) {
		t.Fatalf("pin %s does not parse back to the SPKI digest: %v", SPKIPin(c), err)
	}
}
