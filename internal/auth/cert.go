package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// certUser reads the user name from a verified client certificate.
func certUser(c CertConfig, leaf *x509.Certificate) (string, error) {
	var name string
	switch c.UserFrom {
	case "", "cn":
		name = leaf.Subject.CommonName
		if name == "" {
			return "", fmt.Errorf("the client certificate has no common name (CN) to name the user")
		}
	case "san_dns":
		if len(leaf.DNSNames) == 0 {
			return "", fmt.Errorf("the client certificate has no DNS name (SAN) to name the user")
		}
		name = leaf.DNSNames[0]
	case "san_email":
		if len(leaf.EmailAddresses) == 0 {
			return "", fmt.Errorf("the client certificate has no e-mail address (SAN) to name the user")
		}
		name = leaf.EmailAddresses[0]
	case "san_uri":
		for _, u := range leaf.URIs {
			if s := u.String(); strings.HasPrefix(s, c.URIPrefix) {
				name = strings.TrimPrefix(s, c.URIPrefix)
				break
			}
		}
		if name == "" {
			return "", fmt.Errorf("the client certificate has no URI (SAN) starting with %q to name the user", c.URIPrefix)
		}
	default:
		return "", fmt.Errorf("unknown client_cert.user_from %q", c.UserFrom)
	}
	return strings.ToLower(name), nil
}

// certID names a certificate for logs and revocation without quoting it.
func certID(leaf *x509.Certificate) string {
	return fmt.Sprintf("cert:%x", leaf.SerialNumber)
}

// CertRefs are the store references a certificate is revoked by: its
// serial number and its SHA-256 fingerprint.
func CertRefs(leaf *x509.Certificate) []string {
	fp := sha256.Sum256(leaf.Raw)
	return []string{fmt.Sprintf("serial:%x", leaf.SerialNumber), "sha256:" + hex.EncodeToString(fp[:])}
}

// ParseCertRef reads what an operator gives to revoke a certificate: a
// serial number or a SHA-256 fingerprint, in hex with or without colons,
// optionally prefixed "serial:" or "sha256:" (a bare 64-digit value is a
// fingerprint: serial numbers have at most 40). It returns the store
// reference.
func ParseCertRef(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	kind := ""
	if k, v, ok := strings.Cut(s, ":"); ok && (k == "serial" || k == "sha256") {
		kind, s = k, v
	}
	s = strings.TrimPrefix(strings.ReplaceAll(s, ":", ""), "0x")
	if s == "" {
		return "", fmt.Errorf("empty certificate serial or fingerprint")
	}
	if _, err := hex.DecodeString(strings.Repeat("0", len(s)%2) + s); err != nil {
		return "", fmt.Errorf("%q is not hexadecimal: give the serial number or the SHA-256 fingerprint", s)
	}
	if kind == "" {
		kind = "serial"
		if len(s) == 64 {
			kind = "sha256"
		}
	}
	switch kind {
	case "sha256":
		if len(s) != 64 {
			return "", fmt.Errorf("a SHA-256 fingerprint has 64 hex digits, not %d", len(s))
		}
	case "serial":
		if len(s) > 40 {
			return "", fmt.Errorf("a serial number has at most 40 hex digits, not %d", len(s))
		}
		// As big.Int's %x prints it: no leading zeros.
		s = strings.TrimLeft(s, "0")
		if s == "" {
			s = "0"
		}
	}
	return kind + ":" + s, nil
}
