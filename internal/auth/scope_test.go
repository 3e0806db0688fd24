package auth

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestExternalTokenScope: an external issuer's tokens carry a scope in
// the claims its config names; a malformed scope claim refuses the token
// rather than leave it unrestricted.
func TestExternalTokenScope(t *testing.T) {
	secret := "hs-secret-0123456789abcdef0123456789abcdef"
	svc, st, _ := newService(t, Config{FailedAuthBurst: 1000, Issuers: []IssuerConfig{
		{Issuer: "hs", Audience: []string{"porthole"}, Algorithms: []string{"HS256"}, Secret: secret},
		{Issuer: "custom", Audience: []string{"porthole"}, Algorithms: []string{"HS256"}, Secret: secret,
			SubdomainsClaim: "ph_subs", HostnamesClaim: "ph_hosts", TCPClaim: "ph_tcp", TCPPortsClaim: "ph_ports"},
	}})
	ctx := context.Background()
	_, err := st.CreateUser(ctx, "alice")
	must(t, err)
	sign := func(iss string, extra jwt.MapClaims) string {
		c := jwt.MapClaims{"iss": iss, "aud": "porthole", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		must(t, err)
		return s
	}
	for _, tc := range []struct {
		iss    string
		claims jwt.MapClaims
		want   *Scope
	}{
		{"hs", nil, nil},
		{"hs", jwt.MapClaims{"subdomains": []string{"Web"}}, &Scope{Subdomains: []string{"web"}, Hostnames: nil}},
		{"hs", jwt.MapClaims{"tcp": true}, &Scope{TCP: true}},
		{"hs", jwt.MapClaims{"tcp": false}, &Scope{}},
		{"hs", jwt.MapClaims{"hostnames": []string{"App.Example.org."}, "tcp_ports": []int{22, 2222}},
			&Scope{Hostnames: []string{"app.example.org"}, TCPPorts: []int{22, 2222}}},
		{"custom", jwt.MapClaims{"ph_subs": []string{"a"}, "ph_tcp": true, "subdomains": []string{"ignored"}},
			&Scope{Subdomains: []string{"a"}, TCP: true}},
	} {
		id, err := svc.Authenticate(ctx, Credentials{Token: sign(tc.iss, tc.claims), RemoteAddr: "127.0.0.1:1"})
		must(t, err)
		if !reflect.DeepEqual(id.Scope, tc.want) {
			t.Errorf("claims %v: scope %+v, want %+v", tc.claims, id.Scope, tc.want)
		}
	}
	for _, bad := range []jwt.MapClaims{
		{"subdomains": "web"},
		{"subdomains": []any{"web", 3}},
		{"hostnames": []string{""}},
		{"tcp": "yes"},
		{"tcp_ports": []float64{22.5}},
		{"tcp_ports": []int{0}},
		{"tcp_ports": []int{70000}},
		{"tcp_ports": 22},
	} {
		_, err := svc.Authenticate(ctx, Credentials{Token: sign("hs", bad), RemoteAddr: "127.0.0.1:1"})
		refusedWith(t, err, "claim")
	}
}

func TestScopeChecks(t *testing.T) {
	var none *Scope
	if none.AllowSubdomain("x") != nil || none.AllowHostname("h.example") != nil || none.AllowPort(1) != nil {
		t.Fatal("a nil scope restricts")
	}
	s := &Scope{Subdomains: []string{"a"}, Hostnames: []string{"h.example.org"}, TCPPorts: []int{22}}
	for _, err := range []error{s.AllowSubdomain("b"), s.AllowHostname("x.example.org"), s.AllowPort(23)} {
		if err == nil {
			t.Fatal("scope allowed a name it does not grant")
		}
	}
	if s.AllowSubdomain("a") != nil || s.AllowHostname("H.example.org.") != nil || s.AllowPort(22) != nil {
		t.Fatal("scope refused a name it grants")
	}
	if (&Scope{}).AllowPort(22) == nil || (&Scope{TCP: true}).AllowPort(22) != nil {
		t.Fatal("TCP grant")
	}
}
