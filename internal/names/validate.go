package names

import (
	"fmt"
	"strings"
)

// MaxLabel is the longest DNS label (RFC 1035 section 2.3.4).
const MaxLabel = 63

// DefaultReserved are names no tunnel may take unless the server config
// says otherwise: they are commonly used by the operator's own services or
// look official to a visitor.
var DefaultReserved = []string{
	"www", "api", "admin", "app", "mail", "smtp", "imap", "pop", "ftp",
	"ns", "ns1", "ns2", "dns", "mx", "status", "static", "assets", "cdn",
	"dashboard", "console", "login", "auth", "account", "accounts", "billing",
	"support", "help", "docs", "blog", "tunnel", "tunnels", "porthole",
	"localhost", "root", "system", "internal", "metrics", "health",
}

// ValidateLabel checks that s is usable as one subdomain label: 1-63
// characters of lowercase a-z, 0-9 and '-', neither starting nor ending with
// '-' (RFC 1123 section 2.1). Uppercase is refused rather than folded so a
// client never gets a URL other than the one it asked for.
func ValidateLabel(s string) error {
	if s == "" {
		return fmt.Errorf("subdomain is empty")
	}
	if len(s) > MaxLabel {
		return fmt.Errorf("subdomain %q is %d characters long; the limit is %d", trunc(s), len(s), MaxLabel)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(s)-1 {
				return fmt.Errorf("subdomain %q may not start or end with '-'", s)
			}
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("subdomain %q has uppercase letters; use %q", s, strings.ToLower(s))
		default:
			return fmt.Errorf("subdomain %q has the character %q; only a-z, 0-9 and '-' are allowed", trunc(s), c)
		}
	}
	// Labels of the form "xn--" are IDNA A-labels; "ab--" in the 3rd and 4th
	// positions is reserved for such encodings (RFC 5891 section 4.2.3.1).
	if len(s) >= 4 && s[2] == '-' && s[3] == '-' && !strings.HasPrefix(s, "xn--") {
		return fmt.Errorf("subdomain %q has '--' in the third and fourth positions, reserved for IDNA", s)
	}
	return nil
}

// ValidateHostname checks a full custom domain name such as app.example.org.
func ValidateHostname(h string) error {
	if h == "" {
		return fmt.Errorf("hostname is empty")
	}
	if len(h) > 253 {
		return fmt.Errorf("hostname is %d characters long; the limit is 253", len(h))
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return fmt.Errorf("hostname %q needs at least two labels", h)
	}
	for _, l := range labels {
		if err := ValidateLabel(l); err != nil {
			return fmt.Errorf("hostname %q: %s", trunc(h), strings.Replace(err.Error(), "subdomain", "label", 1))
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 70 {
		return s[:70] + "..."
	}
	return s
}

// ReservedSet is a set of names that no tunnel may take.
type ReservedSet map[string]struct{}

// NewReservedSet builds a set from a list.
func NewReservedSet(list []string) ReservedSet {
	s := make(ReservedSet, len(list))
	for _, n := range list {
		s[strings.ToLower(n)] = struct{}{}
	}
	return s
}

// Has reports whether name is reserved.
func (s ReservedSet) Has(name string) bool {
	_, ok := s[name]
	return ok
}
