package auth

import (
	"crypto/x509"
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
