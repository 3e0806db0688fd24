package server

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/porthole/porthole/internal/protocol"
)

func validCred(s string) bool {
	user, _, ok := strings.Cut(s, ":")
	return ok && user != ""
}

func validNet(s string) bool {
	s = strings.TrimSpace(s)
	_, perr := netip.ParsePrefix(s)
	_, aerr := netip.ParseAddr(s)
	return perr == nil || aerr == nil
}

func validPair(s string) bool {
	name, value, ok := strings.Cut(s, ":")
	return ok && httpguts.ValidHeaderFieldName(strings.TrimSpace(name)) && httpguts.ValidHeaderFieldValue(strings.TrimSpace(value))
}

// FuzzAccessRules compiles arbitrary access rules as a client sends them
// in a bind, and checks a visitor against what compiled: no panic; an
// entry that compiles is one the rules' own syntax allows; the right
// credential is admitted and a changed one refused; a denied address is
// refused whatever it sends.
func FuzzAccessRules(f *testing.F) {
	f.Add("alice:pw", "10.0.0.0/8", "192.0.2.7", "X-Key: v", "192.0.2.7")
	f.Add("bob:pa:ss", "2001:db8::/32", "::1", "X-Flag:", "2001:db8::5")
	f.Add(":nouser", "10.0.0.0/33", "", "", "10.1.2.3")
	f.Add("u:", "::ffff:192.0.2.0/120", "fe80::1%eth0", "Bad Name: x", "192.0.2.9")
	f.Add("x:y\x00z", "0.0.0.0/0", "127.0.0.1/32", "X-A: b\r\nX-C: d", "127.0.0.1")
	f.Add("carol:a:b:c", " 10.1.2.3/8 ", " ::ffff:192.0.2.1 ", "X-Key:  v ", "10.200.0.1")
	f.Add(":pw-only", "", "", "", "192.0.2.1")
	f.Add("erin:pw", "", "", "X-Key", "192.0.2.1")
	f.Add("dave:pw", "1.2.3.4/0", "2001:db8::/129", "X_Under: v", "[::1]:80")
	// Hashing stays cheap here: the digest's properties, not its cost,
	// are under test.
	t, m := argonTime, argonMemory
	argonTime, argonMemory = 1, 8
	f.Cleanup(func() { argonTime, argonMemory = t, m })
	f.Fuzz(func(t *testing.T, cred, allow, deny, header, remote string) {
		in := protocol.Access{}
		if cred != "" {
			in.BasicAuth = []string{cred}
		}
		if allow != "" {
			in.AllowCIDR = []string{allow}
		}
		if deny != "" {
			in.DenyCIDR = []string{deny}
		}
		if header != "" {
			in.RequireHeader = []string{header}
		}
		a, err := compileAccess(context.Background(), &in)
		// What the rules' syntax allows, decided independently of the
		// parser: each entry compiles exactly when it is well formed.
		wellFormed := (cred == "" || validCred(cred)) && (allow == "" || validNet(allow)) &&
			(deny == "" || validNet(deny)) && (header == "" || validPair(header))
		if err != nil {
			if !isCode(err, protocol.CodeBadRequest) || !err.(*protocol.Error).Final || !strings.Contains(err.Error(), " ") {
				t.Fatalf("unclear error %#v", err)
			}
			if _, pass, _ := strings.Cut(cred, ":"); len(pass) >= 4 && strings.Contains(err.Error(), pass) && !strings.Contains(allow+deny+header, pass) {
				t.Fatalf("the refusal %q shows the password", err)
			}
			if wellFormed {
				t.Fatalf("well-formed rules refused: %v", err)
			}
			return
		}
		if !wellFormed {
			t.Fatalf("rules with a malformed entry compiled: %+v", in)
		}
		// Compiling is deterministic: the same rules are the same.
		if b, err := compileAccess(context.Background(), &in); err != nil || !a.sameAs(b) {
			t.Fatalf("the same rules compiled twice differ: %v", err)
		}
		if a == nil {
			if cred != "" || allow != "" || deny != "" || header != "" {
				t.Fatal("rules compiled to nothing")
			}
			return
		}
		ip, err := netip.ParseAddr(remote)
		if err != nil || ip.Zone() != "" {
			return
		}
		addr := netip.AddrPortFrom(ip, 1234).String()
		var hdrs []string
		if len(a.require) > 0 {
			hdrs = append(hdrs, a.require[0].name+": "+a.require[0].value)
		}
		r := visit(addr, hdrs...)
		user, pass, _ := strings.Cut(cred, ":")
		if cred != "" {
			r.SetBasicAuth(user, pass)
		}
		d := a.check(r)
		if a.denies(ip) {
			if d == nil || d.status != 403 {
				t.Fatalf("denied address %s admitted: %+v", ip, d)
			}
			return
		}
		// 401 comes after the address and header checks passed.
		if d != nil && d.status == 401 && cred != "" {
			t.Fatalf("the right credential %q was refused: %+v", cred, d)
		}
		if cred != "" && (d == nil || d.status == 401) {
			w := visit(addr, hdrs...)
			w.SetBasicAuth(user, pass+"x")
			if d2 := a.check(w); d2 == nil {
				t.Fatalf("a wrong password for %q was admitted", cred)
			}
		}
	})
}
