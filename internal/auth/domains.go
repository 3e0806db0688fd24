package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ChallengePrefix is the label under which a custom domain's owner
// publishes the verification token as a TXT record.
const ChallengePrefix = "_porthole-challenge."

// ChallengeName is the DNS name of host's verification record.
func ChallengeName(host string) string { return ChallengePrefix + strings.TrimSuffix(host, ".") }

// NewDomainToken returns a random verification token.
func NewDomainToken() string {
	var b [20]byte
	rand.Read(b[:])
	return "porthole-verify=" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Reasons a DNS check fails; the error message carries the detail.
var (
	ErrRecordMissing = errors.New("verification record not found")
	ErrWrongToken    = errors.New("verification record has the wrong value")
)

// DNSVerifier checks custom domains' TXT records through one resolver.
type DNSVerifier struct {
	// Resolver is "HOST:PORT"; empty means the first nameserver in
	// /etc/resolv.conf.
	Resolver string
	Timeout  time.Duration
}

func (v *DNSVerifier) resolver() (string, error) {
	if v.Resolver != "" {
		return v.Resolver, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return "", errors.New("no DNS resolver: set auth.dns_resolver in the server config")
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// Check looks up host's verification record and compares it with token.
// It wraps ErrRecordMissing or ErrWrongToken when the answer is
// definite, and returns another error when the resolver could not answer.
func (v *DNSVerifier) Check(ctx context.Context, host, token string) error {
	server, err := v.resolver()
	if err != nil {
		return err
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	name := dns.Fqdn(ChallengeName(host))
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		// A long TXT set is re-asked over TCP (RFC 7766).
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return fmt.Errorf("DNS lookup of %s TXT via %s failed: %w", name, server, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return fmt.Errorf("DNS lookup of %s TXT via %s: %s", name, server, dns.RcodeToString[in.Rcode])
	}
	var seen []string
	for _, rr := range in.Answer {
		txt, ok := rr.(*dns.TXT)
		if !ok || !strings.EqualFold(txt.Hdr.Name, name) {
			continue
		}
		// A TXT record of several strings means their concatenation.
		val := strings.Join(txt.Txt, "")
		if val == token {
			return nil
		}
		seen = append(seen, val)
	}
	if len(seen) == 0 {
		return fmt.Errorf("%w: no TXT record at %s", ErrRecordMissing, strings.TrimSuffix(name, "."))
	}
	return fmt.Errorf("%w: the TXT record at %s does not hold the expected token", ErrWrongToken, strings.TrimSuffix(name, "."))
}
