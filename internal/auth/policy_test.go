package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/store"
)

// testDNS answers TXT queries on loopback from a map the test changes.
type testDNS struct {
	addr string
	mu   sync.Mutex
	txt  map[string][]string
	srv  *dns.Server
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{txt: map[string][]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	d.addr = pc.LocalAddr().String()
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		d.mu.Lock()
		vals, ok := d.txt[strings.ToLower(q.Name)]
		d.mu.Unlock()
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, v := range vals {
			// Split values into several strings, as records longer than 255
			// bytes must be; the verifier joins them.
			var parts []string
			for len(v) > 10 {
				parts, v = append(parts, v[:10]), v[10:]
			}
			parts = append(parts, v)
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: parts})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	d.srv.NotifyStartedFunc = func() { close(started) }
	go d.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { d.srv.Shutdown() })
	return d
}

func (d *testDNS) set(host string, vals ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := dns.Fqdn(ChallengeName(host))
	if len(vals) == 0 {
		delete(d.txt, name)
		return
	}
	d.txt[name] = vals
}

func wantCode(t *testing.T, err error, code protocol.Code, text string) {
	t.Helper()
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != code || !strings.Contains(perr.Message, text) {
		t.Fatalf("got %v, want %s containing %q", err, code, text)
	}
}

func TestDNSVerifier(t *testing.T) {
	d := startDNS(t)
	v := &DNSVerifier{Resolver: d.addr, Timeout: time.Second}
	ctx := context.Background()
	if err := v.Check(ctx, "a.example.test", "tok"); !errors.Is(err, ErrRecordMissing) {
		t.Fatalf("no record: %v", err)
	}
	d.set("a.example.test", "other", "porthole-verify=0123456789abcdef")
	if err := v.Check(ctx, "a.example.test", "porthole-verify=0123456789abcdef"); err != nil {
		t.Fatalf("record among others, split in strings: %v", err)
	}
	if err := v.Check(ctx, "a.example.test", "porthole-verify=x"); !errors.Is(err, ErrWrongToken) {
		t.Fatalf("wrong token: %v", err)
	}
	d.srv.Shutdown()
	err := v.Check(ctx, "a.example.test", "x")
	if err == nil || errors.Is(err, ErrRecordMissing) || errors.Is(err, ErrWrongToken) {
		t.Fatalf("resolver down: %v", err)
	}
}

func TestPolicyCustomDomains(t *testing.T) {
	ctx := context.Background()
	d := startDNS(t)
	st, _ := openStore(t)
	now := time.Now()
	clock := func() time.Time { return now }
	p := NewPolicy(Config{DNSResolver: d.addr, DomainRecheck: config.Duration(time.Minute)}, PolicyOptions{Store: st, Now: clock})
	for _, u := range []string{"alice", "bob"} {
		_, err := st.CreateUser(ctx, u)
		must(t, err)
	}
	alice, bob := &Identity{User: "alice"}, &Identity{User: "bob"}
	const host = "app.example.test"
	wantCode(t, p.CheckHostname(ctx, alice, host), protocol.CodeForbidden, "not registered")
	dom, err := st.AddDomain(ctx, store.Domain{Hostname: host, User: "alice", Token: NewDomainToken()})
	must(t, err)
	wantCode(t, p.CheckHostname(ctx, bob, host), protocol.CodeForbidden, "belongs to another user")
	wantCode(t, p.CheckHostname(ctx, alice, host), protocol.CodeForbidden, "no TXT record")
	d.set(host, "porthole-verify=wrong")
	wantCode(t, p.CheckHostname(ctx, alice, host), protocol.CodeForbidden, "wrong value")
	if p.DomainAllowed(ctx, host) == nil {
		t.Fatal("unverified domain allowed a certificate")
	}
	d.set(host, dom.Token)
	must(t, p.CheckHostname(ctx, alice, host))
	must(t, p.DomainAllowed(ctx, host))
	if p.DomainAllowed(ctx, "unknown.example.test") == nil {
		t.Fatal("unknown domain allowed a certificate")
	}

	// The record disappears: within domain_recheck the last result
	// stands, after it the domain is checked again and refused.
	d.set(host)
	must(t, p.CheckHostname(ctx, alice, host))
	now = now.Add(2 * time.Minute)
	wantCode(t, p.CheckHostname(ctx, alice, host), protocol.CodeForbidden, "no TXT record")
	if got, _ := st.GetDomain(ctx, host); got.Verified() {
		t.Fatal("domain still verified after its record disappeared")
	}

	// A resolver that does not answer leaves a verified domain working.
	d.set(host, dom.Token)
	now = now.Add(2 * time.Minute)
	must(t, p.CheckHostname(ctx, alice, host))
	d.srv.Shutdown()
	now = now.Add(2 * time.Minute)
	must(t, p.CheckHostname(ctx, alice, host))
}

func TestPolicyReservations(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	for _, u := range []string{"alice", "bob"} {
		_, err := st.CreateUser(ctx, u)
		must(t, err)
	}
	must(t, st.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "shop", User: "bob"}))
	must(t, st.Reserve(ctx, store.Reservation{Kind: store.ReservedPort, Name: "20022", User: "bob"}))
	alice, bob := &Identity{User: "alice"}, &Identity{User: "bob"}

	p := NewPolicy(Config{}, PolicyOptions{Store: st})
	wantCode(t, p.CheckSubdomain(ctx, alice, "shop"), protocol.CodeNameReserved, "reserved for another user")
	wantCode(t, p.CheckSubdomain(ctx, &Identity{}, "shop"), protocol.CodeNameReserved, "reserved")
	must(t, p.CheckSubdomain(ctx, bob, "shop"))
	must(t, p.CheckSubdomain(ctx, alice, "free"))
	wantCode(t, p.CheckPort(ctx, alice, 20022), protocol.CodeNameReserved, "port 20022")
	must(t, p.CheckPort(ctx, bob, 20022))
	must(t, p.CheckPort(ctx, alice, 20023))
	wantCode(t, p.CheckSubdomain(ctx, &Identity{User: "bob", Scope: &Scope{Subdomains: []string{"api2"}}}, "shop"), protocol.CodeForbidden, "may not bind")

	strict := NewPolicy(Config{RestrictToReservations: true}, PolicyOptions{Store: st})
	wantCode(t, strict.CheckSubdomain(ctx, alice, "free"), protocol.CodeForbidden, "only their reservations")
	must(t, strict.CheckSubdomain(ctx, bob, "shop"))
	wantCode(t, strict.CheckPort(ctx, alice, 20023), protocol.CodeForbidden, "only their reservations")

	if o := p.UserLimits(ctx, alice); o == nil || o.MaxTunnelsPerUser != nil {
		t.Fatalf("alice has no limits of her own, got overrides %+v", o)
	}
	must(t, st.SetUserLimits(ctx, "alice", store.Limits{MaxTunnels: ptr(1), RequestsPerSecond: ptr(2.5)}))
	o := p.UserLimits(ctx, alice)
	if o == nil || *o.MaxTunnelsPerUser != 1 || *o.RequestsPerSecond != 2.5 || o.Burst != nil {
		t.Fatalf("overrides %+v", o)
	}
	if p.UserLimits(ctx, &Identity{}) != nil {
		t.Fatal("anonymous identity got overrides")
	}
}
