package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/registry"
)

// testPool returns a pool route with n members named m0, m1, ...
func testPool(n int, strategy string) (*route, []*tunnel) {
	r := newRoute("shop.localhost", &protocol.Pool{Strategy: strategy}, nil)
	var ms []*tunnel
	for i := range n {
		t := &tunnel{name: "m" + strconv.Itoa(i)}
		r.add(t)
		ms = append(ms, t)
	}
	return r, ms
}

// picks counts which member each of n picks returns.
func picks(r *route, skip *tunnel, n int) map[string]int {
	got := map[string]int{}
	for range n {
		t := r.pick(skip)
		if t == nil {
			got["<nil>"]++
			continue
		}
		got[t.name]++
	}
	return got
}

func TestRouteRoundRobinEven(t *testing.T) {
	for _, strategy := range []string{"", protocol.PoolRoundRobin} {
		r, _ := testPool(3, strategy)
		got := picks(r, nil, 3000)
		if got["m0"] != 1000 || got["m1"] != 1000 || got["m2"] != 1000 {
			t.Fatalf("strategy %q: 3000 picks over 3 members: %v", strategy, got)
		}
	}
}

func TestRouteSingleMember(t *testing.T) {
	r, ms := testPool(1, "")
	if got := picks(r, nil, 10); got["m0"] != 10 {
		t.Fatalf("one member: %v", got)
	}
	// Even an unhealthy lone member gets the visitor (its own error
	// beats a generic one); skipping it leaves nobody.
	ms[0].unhealthy.Store(true)
	if r.pick(nil) != ms[0] {
		t.Fatal("lone unhealthy member not picked")
	}
	if got := r.pick(ms[0]); got != nil {
		t.Fatalf("pick skipping the only member returned %s", got.name)
	}
	empty := newRoute("x", &protocol.Pool{}, nil)
	if got := empty.pick(nil); got != nil {
		t.Fatalf("empty route picked %s", got.name)
	}
}

func TestRouteSkipsUnusableMembers(t *testing.T) {
	for _, strategy := range []string{protocol.PoolRoundRobin, protocol.PoolLeastStreams} {
		r, ms := testPool(3, strategy)
		// Unhealthy: its share is spread evenly over the others.
		ms[1].unhealthy.Store(true)
		got := picks(r, nil, 3000)
		if got["m1"] != 0 || got["m0"] < 1400 || got["m2"] < 1400 {
			t.Fatalf("%s, m1 unhealthy: %v", strategy, got)
		}
		// Marked down after a failure: out too, for memberDownFor.
		ms[2].markDown()
		if d := time.Until(time.Unix(0, ms[2].downUntil.Load())); d < memberDownFor-time.Second || d > memberDownFor {
			t.Fatalf("%s: marked down for %s, want %s", strategy, d, memberDownFor)
		}
		if got := picks(r, nil, 100); got["m0"] != 100 {
			t.Fatalf("%s, m1 unhealthy and m2 down: %v", strategy, got)
		}
		// Both back.
		ms[1].unhealthy.Store(false)
		ms[2].downUntil.Store(time.Now().Add(-time.Millisecond).UnixNano())
		got = picks(r, nil, 3000)
		for _, m := range ms {
			if got[m.name] < 900 {
				t.Fatalf("%s, all usable again: %v", strategy, got)
			}
		}
	}
}

func TestRouteMarkDownOnlyInPools(t *testing.T) {
	r := newRoute("solo.localhost", nil, nil)
	m := &tunnel{name: "solo"}
	r.add(m)
	m.markDown()
	if m.downUntil.Load() != 0 {
		t.Fatal("a tunnel outside a pool was marked down")
	}
	(&tunnel{}).markDown() // no route: nothing to do, no panic
}

func TestRouteFallbackWhenNoneUsable(t *testing.T) {
	for _, strategy := range []string{protocol.PoolRoundRobin, protocol.PoolLeastStreams} {
		r, ms := testPool(3, strategy)
		for _, m := range ms {
			m.unhealthy.Store(true)
		}
		ms[2].markDown()
		for range 20 {
			if r.pick(nil) == nil {
				t.Fatalf("%s: no member picked while all are unusable", strategy)
			}
			if got := r.pick(ms[0]); got == nil || got == ms[0] {
				t.Fatalf("%s: pick skipping m0 returned %v", strategy, got)
			}
		}
	}
}

func TestRoutePickSkip(t *testing.T) {
	r, ms := testPool(3, protocol.PoolRoundRobin)
	got := picks(r, ms[1], 3000)
	if got["m1"] != 0 || got["m0"] != 1500 || got["m2"] != 1500 {
		t.Fatalf("skipping m1: %v", got)
	}
	// The retry's choice: another usable member before an unusable one.
	ms[2].unhealthy.Store(true)
	if got := picks(r, ms[0], 100); got["m1"] != 100 {
		t.Fatalf("skipping m0 with m2 unhealthy: %v", got)
	}
}

func TestRouteLeastStreams(t *testing.T) {
	r, ms := testPool(3, protocol.PoolLeastStreams)
	ms[0].active.Store(3)
	ms[1].active.Store(1)
	ms[2].active.Store(2)
	if got := picks(r, nil, 100); got["m1"] != 100 {
		t.Fatalf("active 3/1/2: %v", got)
	}
	// Idle streams in a member's pool are not load.
	ms[1].openStreams.Store(100)
	if got := picks(r, nil, 100); got["m1"] != 100 {
		t.Fatalf("active 3/1/2, m1 with 100 idle streams: %v", got)
	}
	// The least busy member unusable: the next least busy.
	ms[1].unhealthy.Store(true)
	if got := picks(r, nil, 100); got["m2"] != 100 {
		t.Fatalf("active 3/1/2, m1 unhealthy: %v", got)
	}
	// Equally busy members take turns; the busier one gets nobody.
	ms[1].unhealthy.Store(false)
	ms[0].active.Store(0)
	ms[1].active.Store(0)
	ms[2].active.Store(5)
	got := picks(r, nil, 300)
	if got["m2"] != 0 || got["m0"] < 90 || got["m1"] < 90 {
		t.Fatalf("active 0/0/5: %v", got)
	}
	// The skipped member is never picked, even when least busy.
	if got := picks(r, ms[0], 100); got["m1"] != 100 {
		t.Fatalf("active 0/0/5 skipping m0: %v", got)
	}
}

func TestRouteMembership(t *testing.T) {
	r, ms := testPool(3, "")
	for _, m := range ms {
		if m.route != r {
			t.Fatal("member without its route")
		}
	}
	if n := r.remove(ms[1]); n != 2 {
		t.Fatalf("after removing one of 3: %d left", n)
	}
	if n := r.remove(ms[1]); n != 2 {
		t.Fatalf("removing it again: %d left", n)
	}
	if got := picks(r, nil, 100); got["m0"] != 50 || got["m2"] != 50 {
		t.Fatalf("after removing m1: %v", got)
	}
	r.remove(ms[0])
	if n := r.remove(ms[2]); n != 0 || r.pick(nil) != nil {
		t.Fatalf("after removing all: %d left", n)
	}
}

// claimTest is a server with just what claim and unclaim use.
func claimTest() *Server {
	return &Server{reg: registry.NewMemory[*route](nil)}
}

func claimSession(user, client string) *session {
	return &session{ident: &auth.Identity{User: user}, owner: registry.Owner{User: user, Client: client}}
}

func wantCode(t *testing.T, err error, code protocol.Code) {
	t.Helper()
	if !isCode(err, code) {
		t.Fatalf("got %v, want a %s error", err, code)
	}
	if perr := err.(*protocol.Error); !perr.Final {
		t.Fatalf("%v is not final", err)
	}
}

func TestClaimPool(t *testing.T) {
	s := claimTest()
	const key = "shop.localhost"
	pool := &protocol.Pool{}
	a1, a2 := claimSession("alice", "c1"), claimSession("alice", "c2")
	t1, t2 := &tunnel{name: "t1", sess: a1}, &tunnel{name: "t2", sess: a2}
	if err := s.claim(a1, t1, key, &protocol.Pool{Strategy: protocol.PoolLeastStreams}); err != nil {
		t.Fatal(err)
	}
	// A second client of the same user joins; its own strategy is ignored.
	if err := s.claim(a2, t2, key, &protocol.Pool{Strategy: protocol.PoolRoundRobin}); err != nil {
		t.Fatal(err)
	}
	c, ok := s.reg.Lookup(key)
	if !ok || len(c.Endpoint.list()) != 2 || c.Endpoint.strategy != protocol.PoolLeastStreams || t1.route != t2.route {
		t.Fatalf("pool after two members: %+v", c)
	}

	// Another user may not join, nor take the name without a pool.
	bob := claimSession("bob", "c3")
	wantCode(t, s.claim(bob, &tunnel{sess: bob}, key, pool), protocol.CodeNameTaken)
	err := s.claim(bob, &tunnel{sess: bob}, key, nil)
	wantCode(t, err, protocol.CodeNameTaken)
	if msg := err.Error(); !strings.Contains(msg, "another user") || strings.Contains(msg, "--pool") {
		t.Fatalf("bob without a pool is told %q; want another user's name, and no advice to use --pool", msg)
	}
	// Nor may the same user's client without --pool.
	a3 := claimSession("alice", "c4")
	wantCode(t, s.claim(a3, &tunnel{sess: a3}, key, nil), protocol.CodeNameTaken)
	// Members must share the access rules.
	acc, err := compileAccess(context.Background(), &protocol.Access{BasicAuth: []string{"u:p"}})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.claim(a3, &tunnel{sess: a3, access: acc}, key, pool), protocol.CodeBadRequest)
	wantCode(t, s.claim(a3, &tunnel{sess: a3}, "other.localhost", &protocol.Pool{Strategy: "fastest"}), protocol.CodeBadRequest)
	if n := len(c.Endpoint.list()); n != 2 {
		t.Fatalf("refused claims changed the pool: %d members", n)
	}

	// Members leave; the last one out releases the name (or holds it
	// for the grace period).
	s.unclaim(t1, time.Minute)
	if c, ok := s.reg.Lookup(key); !ok || !c.Active() || len(c.Endpoint.list()) != 1 {
		t.Fatal("pool gone with a member left")
	}
	s.unclaim(t2, time.Minute)
	c, ok = s.reg.Lookup(key)
	if !ok || c.Active() {
		t.Fatalf("last member out: %+v, want the name held", c)
	}
	// While held, the user's pool gets it back, bob does not.
	wantCode(t, s.claim(bob, &tunnel{sess: bob}, key, pool), protocol.CodeNameTaken)
	t4 := &tunnel{sess: a2}
	if err := s.claim(a2, t4, key, pool); err != nil {
		t.Fatalf("rejoining a held pool: %v", err)
	}
	s.unclaim(t4, 0)
	if _, ok := s.reg.Lookup(key); ok {
		t.Fatal("name still held after the last member left without grace")
	}
}

func TestClaimPlainNameRefusesPool(t *testing.T) {
	s := claimTest()
	const key = "solo.localhost"
	a1, a2 := claimSession("", "c1"), claimSession("", "c2")
	if err := s.claim(a1, &tunnel{sess: a1}, key, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.claim(a2, &tunnel{sess: a2}, key, &protocol.Pool{}), protocol.CodeNameTaken)
	// TCP ports have their own code.
	if err := s.claim(a1, &tunnel{sess: a1}, tcpKey(20001), nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.claim(a2, &tunnel{sess: a2}, tcpKey(20001), &protocol.Pool{}), protocol.CodePortUnavailable)
}
