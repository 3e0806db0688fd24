package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/porthole/porthole/internal/protocol"
)

func mustAccess(t *testing.T, a protocol.Access) *access {
	t.Helper()
	c, err := compileAccess(context.Background(), &a)
	if err != nil {
		t.Fatalf("compileAccess(context.Background(), %+v): %v", a, err)
	}
	return c
}

// visit builds a visitor request from remote with "Name: value" headers.
func visit(remote string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.localhost/", nil)
	r.RemoteAddr = remote
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Add(k, strings.TrimSpace(v))
	}
	return r
}

func withBasic(r *http.Request, user, pass string) *http.Request {
	r.SetBasicAuth(user, pass)
	return r
}

// wantDenial checks check's verdict: status 0 means admitted.
func wantDenial(t *testing.T, what string, a *access, r *http.Request, status int, code string) {
	t.Helper()
	d := a.check(r)
	switch {
	case status == 0 && d != nil:
		t.Errorf("%s: refused (%d %s), want admitted", what, d.status, d.code)
	case status != 0 && d == nil:
		t.Errorf("%s: admitted, want %d %s", what, status, code)
	case d != nil && (d.status != status || d.code != code || d.reason == ""):
		t.Errorf("%s: %d %s %q, want %d %s", what, d.status, d.code, d.reason, status, code)
	}
}

func TestCompileAccessEmpty(t *testing.T) {
	for _, a := range []*protocol.Access{nil, {}, {BasicAuth: []string{}}} {
		if c, err := compileAccess(context.Background(), a); c != nil || err != nil {
			t.Fatalf("compileAccess(context.Background(), %+v) = %v, %v; want no rules", a, c, err)
		}
	}
	var none *access
	if none.check(visit("192.0.2.1:1")) != nil || none.denies(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("no rules refused a visitor")
	}
}

func TestCompileAccessRejects(t *testing.T) {
	many := make([]string, protocol.MaxAccessRules+1)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	for _, a := range []protocol.Access{
		{BasicAuth: []string{"nocolon"}},
		{BasicAuth: []string{":password"}},
		{BasicAuth: []string{"ok:fine", ""}},
		{AllowCIDR: []string{"nope"}},
		{AllowCIDR: []string{""}},
		{AllowCIDR: []string{"10.0.0.0/33"}},
		{DenyCIDR: []string{"2001:db8::/129"}},
		{DenyCIDR: []string{"300.0.0.1"}},
		{RequireHeader: []string{"X-Key"}},
		{RequireHeader: []string{": value"}},
		{RequireHeader: []string{"Bad Name: value"}},
		{RequireHeader: []string{"X-Key: line\nbreak"}},
		{AllowCIDR: many},
		{BasicAuth: many},
		{RequireHeader: many},
	} {
		c, err := compileAccess(context.Background(), &a)
		if c != nil || !isCode(err, protocol.CodeBadRequest) || !err.(*protocol.Error).Final {
			t.Errorf("compileAccess(context.Background(), %.80v): %v, %v; want a final bad_request", a, c, err)
			continue
		}
		for _, cred := range a.BasicAuth {
			if _, pass, ok := strings.Cut(cred, ":"); ok && pass != "" && strings.Contains(err.Error(), pass) {
				t.Errorf("the refusal %q shows the password", err)
			}
		}
	}
}

func TestAccessCIDR(t *testing.T) {
	allow := mustAccess(t, protocol.Access{AllowCIDR: []string{"10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32"}})
	deny := mustAccess(t, protocol.Access{DenyCIDR: []string{"10.1.2.3/8", "::1"}})
	zoned := mustAccess(t, protocol.Access{DenyCIDR: []string{"fe80::/10"}})
	both := mustAccess(t, protocol.Access{AllowCIDR: []string{"10.0.0.0/8"}, DenyCIDR: []string{"10.9.0.0/16"}})
	for _, tc := range []struct {
		a      *access
		remote string
		denied bool
	}{
		{allow, "10.200.3.4:5000", false},
		{allow, "192.0.2.7:1", false},
		{allow, "192.0.2.8:1", true},
		{allow, "[2001:db8::5]:443", false},
		{allow, "[2001:db9::5]:443", true},
		{allow, "[::ffff:10.1.1.1]:80", false}, // IPv4 visitor on a dual-stack listener
		{allow, "not-an-address", true},        // unknown address: not in any allow list
		{deny, "10.77.0.1:1", true},            // 10.1.2.3/8 is 10.0.0.0/8
		{deny, "11.0.0.1:1", false},
		{deny, "[::1]:80", true},
		{deny, "127.0.0.1:80", false},
		{deny, "[::ffff:10.0.0.1]:80", true},
		{deny, "[fe80::1%eth0]:80", false},
		{zoned, "[fe80::1%eth0]:80", true}, // a zone does not slip past a rule
		{zoned, "[fe80::1]:80", true},
		{zoned, "[fec0::1]:80", false},
		{both, "10.8.0.1:1", false},
		{both, "10.9.0.1:1", true}, // deny wins over allow
		{both, "172.16.0.1:1", true},
	} {
		want := 0
		if tc.denied {
			want = http.StatusForbidden
		}
		wantDenial(t, tc.remote, tc.a, visit(tc.remote), want, "access_denied_address")
		ip := remoteIP(tc.remote)
		if got := tc.a.denies(ip); got != tc.denied {
			t.Errorf("denies(%s) = %v, want %v", ip, got, tc.denied)
		}
	}
}

func TestAccessRequireHeader(t *testing.T) {
	a := mustAccess(t, protocol.Access{RequireHeader: []string{"x-key: s3cret", "X-Team:  blue "}})
	const ip = "192.0.2.1:1"
	wantDenial(t, "both headers", a, visit(ip, "X-Key: s3cret", "X-Team: blue"), 0, "")
	wantDenial(t, "names in another case", a, visit(ip, "X-KEY: s3cret", "x-team: blue"), 0, "")
	wantDenial(t, "none", a, visit(ip), 403, "access_denied_header")
	wantDenial(t, "one missing", a, visit(ip, "X-Key: s3cret"), 403, "access_denied_header")
	wantDenial(t, "wrong value", a, visit(ip, "X-Key: S3CRET", "X-Team: blue"), 403, "access_denied_header")
	wantDenial(t, "value with a suffix", a, visit(ip, "X-Key: s3cret!", "X-Team: blue"), 403, "access_denied_header")
	wantDenial(t, "empty value", a, visit(ip, "X-Key:", "X-Team: blue"), 403, "access_denied_header")

	// A required header with an empty value must still be sent.
	empty := mustAccess(t, protocol.Access{RequireHeader: []string{"X-Flag:"}})
	wantDenial(t, "empty required value, header sent", empty, visit(ip, "X-Flag:"), 0, "")
	wantDenial(t, "empty required value, header missing", empty, visit(ip), 403, "access_denied_header")
}

func TestAccessBasicAuth(t *testing.T) {
	a := mustAccess(t, protocol.Access{BasicAuth: []string{"alice:pw-a", "bob:pa:ss", "carol:"}})
	const ip = "192.0.2.1:1"
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "pw-a", true},
		{"bob", "pa:ss", true}, // a password may hold colons
		{"carol", "", true},
		{"alice", "pa:ss", false},
		{"bob", "pw-a", false},
		{"alice", "pw-a ", false},
		{"Alice", "pw-a", false},
		{"alice:pw", "-a", false},
		{"", "alice:pw-a", false},
		{"eve", "", false},
	} {
		code, status := "", 0
		if !tc.ok {
			code, status = "basic_auth_failed", http.StatusUnauthorized
		}
		wantDenial(t, tc.user+":"+tc.pass, a, withBasic(visit(ip), tc.user, tc.pass), status, code)
	}
	wantDenial(t, "no credentials", a, visit(ip), 401, "basic_auth_required")
	wantDenial(t, "bearer", a, visit(ip, "Authorization: Bearer pw-a"), 401, "basic_auth_required")
	wantDenial(t, "bad base64", a, visit(ip, "Authorization: Basic %%%"), 401, "basic_auth_required")
	// Only digests are kept.
	for _, d := range a.basic {
		if strings.Contains(string(d[:]), "pw-a") {
			t.Fatal("password kept in clear")
		}
	}
}

func TestAccessOrder(t *testing.T) {
	a := mustAccess(t, protocol.Access{
		BasicAuth:     []string{"alice:pw"},
		AllowCIDR:     []string{"10.0.0.0/8"},
		RequireHeader: []string{"X-Key: k"},
	})
	good := func(remote string) *http.Request { return withBasic(visit(remote, "X-Key: k"), "alice", "pw") }
	wantDenial(t, "everything right", a, good("10.0.0.1:1"), 0, "")
	// A refused address learns nothing about the other rules.
	wantDenial(t, "refused address with good credentials", a, good("192.0.2.1:1"), 403, "access_denied_address")
	wantDenial(t, "refused address, nothing else", a, visit("192.0.2.1:1"), 403, "access_denied_address")
	wantDenial(t, "no header", a, withBasic(visit("10.0.0.1:1"), "alice", "pw"), 403, "access_denied_header")
	wantDenial(t, "header, no credentials", a, visit("10.0.0.1:1", "X-Key: k"), 401, "basic_auth_required")
}

func TestAccessSameAs(t *testing.T) {
	a := mustAccess(t, protocol.Access{BasicAuth: []string{"u:p"}, AllowCIDR: []string{"10.0.0.0/8"}})
	b := mustAccess(t, protocol.Access{BasicAuth: []string{"u:p"}, AllowCIDR: []string{"10.0.0.0/8"}})
	c := mustAccess(t, protocol.Access{BasicAuth: []string{"u:q"}, AllowCIDR: []string{"10.0.0.0/8"}})
	d := mustAccess(t, protocol.Access{BasicAuth: []string{"u:p"}, AllowCIDR: []string{"10.0.0.0/8"}, RequireHeader: []string{"X: y"}})
	var none *access
	switch {
	case !a.sameAs(b), a.sameAs(c), a.sameAs(d), a.sameAs(none), none.sameAs(a), !none.sameAs(nil):
		t.Fatal("sameAs")
	}
}

func TestHeaderRules(t *testing.T) {
	var none *headerRules
	h := http.Header{"X-A": {"1"}}
	none.applyRequest(h)
	none.applyResponse(h)
	if len(h) != 1 {
		t.Fatal("no rules changed headers")
	}
	if r, err := compileHeaderRules(nil); r != nil || err != nil {
		t.Fatalf("compileHeaderRules(nil) = %v, %v", r, err)
	}

	r, err := compileHeaderRules(&protocol.HeaderRules{
		RequestAdd:     []string{"x-from: porthole", "X-Tag:  one "},
		RequestRemove:  []string{"x-secret", " Cookie "},
		ResponseAdd:    []string{"X-Frame-Options: DENY", "Cache-Control: no-store"},
		ResponseRemove: []string{"server", "Cache-Control"},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := http.Header{"X-Secret": {"leak"}, "Cookie": {"a=b"}, "X-Tag": {"visitor"}, "X-Other": {"kept"}}
	r.applyRequest(req)
	want := http.Header{"X-From": {"porthole"}, "X-Tag": {"visitor", "one"}, "X-Other": {"kept"}}
	if !headersEqual(req, want) {
		t.Fatalf("request headers %v, want %v", req, want)
	}
	resp := http.Header{"Server": {"app/1"}, "Cache-Control": {"max-age=60"}, "X-Keep": {"yes"}}
	r.applyResponse(resp)
	// Removal comes first, so a rule can replace a header.
	want = http.Header{"X-Frame-Options": {"DENY"}, "Cache-Control": {"no-store"}, "X-Keep": {"yes"}}
	if !headersEqual(resp, want) {
		t.Fatalf("response headers %v, want %v", resp, want)
	}
}

func TestHeaderRulesReject(t *testing.T) {
	many := make([]string, protocol.MaxAccessRules+1)
	for i := range many {
		many[i] = "X-A: 1"
	}
	for _, h := range []protocol.HeaderRules{
		{RequestAdd: []string{"NoColon"}},
		{RequestAdd: []string{": v"}},
		{ResponseAdd: []string{"Bad Name: v"}},
		{ResponseAdd: []string{"X-A: line\r\nX-Injected: 1"}},
		{RequestRemove: []string{""}},
		{RequestRemove: []string{"bad name"}},
		{ResponseRemove: []string{"X-A:"}},
		{RequestAdd: many},
		{ResponseRemove: slices.Repeat([]string{"X-A"}, protocol.MaxAccessRules+1)},
	} {
		r, err := compileHeaderRules(&h)
		if r != nil || !isCode(err, protocol.CodeBadRequest) || !err.(*protocol.Error).Final {
			t.Errorf("compileHeaderRules(%.80v): %v, %v; want a final bad_request", h, r, err)
		}
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
