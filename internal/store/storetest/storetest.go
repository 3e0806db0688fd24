// Package storetest is the conformance suite every store.Store backend
// must pass. It owns the behaviour that callers rely on (errors, change
// log order, concurrent use from two handles as from two processes); the
// backends' own tests only say how to get a fresh database.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/store"
)

// Harness gives the suite one fresh, empty database.
type Harness struct {
	// Open opens the database; every call opens the same one, as a second
	// process would.
	Open func(ctx context.Context) (store.Store, error)
	// Exec runs one raw SQL statement on it.
	Exec func(ctx context.Context, query string) error
}

// Run runs the suite; newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness, s store.Store)
	}{
		{"Users", testUsers},
		{"Limits", testLimits},
		{"APIKeys", testAPIKeys},
		{"Tokens", testTokens},
		{"TokenRecordsKept", testTokenRecordsKept},
		{"TokenCutoffs", testTokenCutoffs},
		{"CertRevocations", testCertRevocations},
		{"DomainChanges", testDomainChanges},
		{"Reservations", testReservations},
		{"Domains", testDomains},
		{"DeleteUserCascades", testDeleteUser},
		{"ChangeLog", testChangeLog},
		{"TwoHandles", testTwoHandles},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Schema", testSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := open(t, h)
			tc.fn(t, h, s)
		})
	}
}

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s, err := h.Open(context.Background())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func testUsers(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	u, err := s.CreateUser(ctx, "alice")
	must(t, err)
	if u.Name != "alice" || u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("created %+v", u)
	}
	_, err = s.CreateUser(ctx, "alice")
	wantErr(t, err, store.ErrExists)
	for _, bad := range []string{"", "Alice", "a b", "x/y", string(make([]byte, 65))} {
		if _, err := s.CreateUser(ctx, bad); err == nil {
			t.Errorf("user name %q accepted", bad)
		}
	}
	_, err = s.CreateUser(ctx, "bob@example.org")
	must(t, err)
	got, err := s.GetUser(ctx, "alice")
	must(t, err)
	if !got.CreatedAt.Equal(u.CreatedAt) || got.Limits.MaxTunnels != nil {
		t.Fatalf("GetUser = %+v, want %+v", got, u)
	}
	_, err = s.GetUser(ctx, "carol")
	wantErr(t, err, store.ErrNotFound)
	list, err := s.ListUsers(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob@example.org" {
		t.Fatalf("ListUsers = %+v", list)
	}
	wantErr(t, s.DeleteUser(ctx, "carol"), store.ErrNotFound)
	must(t, s.DeleteUser(ctx, "bob@example.org"))
	_, err = s.GetUser(ctx, "bob@example.org")
	wantErr(t, err, store.ErrNotFound)
}

func ptr[T any](v T) *T { return &v }

func testLimits(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	l := store.Limits{MaxTunnels: ptr(3), MaxSessions: ptr(2), RequestsPerSecond: ptr(12.5), Burst: ptr(40), BandwidthBytesPerSecond: ptr(int64(1) << 40), MaxConnectionsPerTunnel: ptr(7)}
	must(t, s.SetUserLimits(ctx, "alice", l))
	u, err := s.GetUser(ctx, "alice")
	must(t, err)
	g := u.Limits
	if g.MaxTunnels == nil || *g.MaxTunnels != 3 || *g.MaxSessions != 2 || *g.RequestsPerSecond != 12.5 || *g.Burst != 40 || *g.BandwidthBytesPerSecond != 1<<40 || g.MaxConnectionsPerTunnel == nil || *g.MaxConnectionsPerTunnel != 7 {
		t.Fatalf("limits = %+v", g)
	}
	// Clearing one leaves the others.
	l.Burst = nil
	must(t, s.SetUserLimits(ctx, "alice", l))
	u, err = s.GetUser(ctx, "alice")
	must(t, err)
	if u.Limits.Burst != nil || u.Limits.MaxTunnels == nil {
		t.Fatalf("after clearing burst: %+v", u.Limits)
	}
	wantErr(t, s.SetUserLimits(ctx, "nobody", l), store.ErrNotFound)
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func testAPIKeys(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_1", User: "nobody", Hash: hash("a")})
	wantErr(t, err, store.ErrNotFound)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	k1, err := s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_1", User: "alice", Name: "laptop", Hash: hash("a"), ExpiresAt: exp})
	must(t, err)
	if !k1.ExpiresAt.Equal(exp) || k1.Name != "laptop" || k1.User != "alice" {
		t.Fatalf("created %+v", k1)
	}
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_1", User: "alice", Hash: hash("b")})
	wantErr(t, err, store.ErrExists)
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_2", User: "alice", Hash: hash("b")})
	must(t, err)

	k, stored, err := s.APIKeyByHash(ctx, hash("a"))
	must(t, err)
	if k.ID != "key_1" || string(stored) != string(hash("a")) || !k.ExpiresAt.Equal(exp) || !k.LastUsedAt.IsZero() || !k.RevokedAt.IsZero() {
		t.Fatalf("by hash: %+v", k)
	}
	_, _, err = s.APIKeyByHash(ctx, hash("zzz"))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.APIKeyByID(ctx, "key_9")
	wantErr(t, err, store.ErrNotFound)

	used := time.Now().Truncate(time.Millisecond)
	must(t, s.TouchAPIKey(ctx, "key_1", used))
	// A second use within a minute does not write.
	must(t, s.TouchAPIKey(ctx, "key_1", used.Add(30*time.Second)))
	k, err = s.APIKeyByID(ctx, "key_1")
	must(t, err)
	if !k.LastUsedAt.Equal(used) {
		t.Fatalf("last used %v, want %v", k.LastUsedAt, used)
	}
	must(t, s.TouchAPIKey(ctx, "key_1", used.Add(2*time.Minute)))
	k, _ = s.APIKeyByID(ctx, "key_1")
	if !k.LastUsedAt.Equal(used.Add(2 * time.Minute)) {
		t.Fatalf("last used %v after a later use", k.LastUsedAt)
	}

	rev := time.Now().Truncate(time.Millisecond)
	must(t, s.RevokeAPIKey(ctx, "key_1", rev))
	must(t, s.RevokeAPIKey(ctx, "key_1", rev.Add(time.Hour))) // idempotent, keeps the first time
	wantErr(t, s.RevokeAPIKey(ctx, "key_9", rev), store.ErrNotFound)
	k, _, err = s.APIKeyByHash(ctx, hash("a"))
	must(t, err)
	if !k.RevokedAt.Equal(rev) {
		t.Fatalf("revoked at %v, want %v", k.RevokedAt, rev)
	}

	_, err = s.CreateUser(ctx, "bob")
	must(t, err)
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_3", User: "bob", Hash: hash("c")})
	must(t, err)
	all, err := s.ListAPIKeys(ctx, "")
	must(t, err)
	mine, err := s.ListAPIKeys(ctx, "alice")
	must(t, err)
	if len(all) != 3 || len(mine) != 2 || mine[0].ID != "key_1" || mine[1].ID != "key_2" {
		t.Fatalf("list all %d, alice %+v", len(all), mine)
	}
	_, err = s.ListAPIKeys(ctx, "nobody")
	wantErr(t, err, store.ErrNotFound)
}

func testTokens(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	ok, err := s.TokenRevoked(ctx, "jti-1")
	must(t, err)
	if ok {
		t.Fatal("unknown token reported revoked")
	}
	must(t, s.RevokeToken(ctx, "jti-1", "alice", time.Now().Add(time.Hour)))
	must(t, s.RevokeToken(ctx, "jti-1", "alice", time.Now().Add(time.Hour)))
	if ok, _ := s.TokenRevoked(ctx, "jti-1"); !ok {
		t.Fatal("revoked token not reported")
	}
	if err := s.RevokeToken(ctx, "", "alice", time.Time{}); err == nil {
		t.Fatal("empty token id accepted")
	}
}

// testTokenRecordsKept: a revocation record lives until the latest
// expiry it was given, whatever came first; pruning only drops records
// of tokens that have expired anyway.
func testTokenRecordsKept(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	// First revoked with an expiry that was wrong (already past), then
	// again with the token's own, later one.
	must(t, s.RevokeToken(ctx, "jti-early", "alice", time.Now().Add(-2*time.Hour)))
	must(t, s.RevokeToken(ctx, "jti-early", "alice", time.Now().Add(time.Hour)))
	must(t, s.RevokeToken(ctx, "jti-forever", "alice", time.Time{}))
	must(t, s.RevokeToken(ctx, "jti-forever", "alice", time.Now().Add(-2*time.Hour)))
	must(t, s.RevokeToken(ctx, "jti-gone", "alice", time.Now().Add(-2*time.Hour)))
	// Each revocation prunes expired records.
	must(t, s.RevokeToken(ctx, "jti-other", "alice", time.Now().Add(time.Hour)))
	for _, id := range []string{"jti-early", "jti-forever", "jti-other"} {
		if ok, err := s.TokenRevoked(ctx, id); err != nil || !ok {
			t.Fatalf("%s no longer revoked (%v)", id, err)
		}
	}
	if ok, _ := s.TokenRevoked(ctx, "jti-gone"); ok {
		t.Fatal("the record of a token that expired two hours ago was kept")
	}
	// Several ids at once: any one revoked is enough.
	if ok, _ := s.TokenRevoked(ctx, "nope", "sha256:00", "jti-other"); !ok {
		t.Fatal("TokenRevoked with several ids")
	}
	if ok, _ := s.TokenRevoked(ctx); ok {
		t.Fatal("TokenRevoked with no ids")
	}
}

func testTokenCutoffs(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	c, err := s.TokenCutoff(ctx, "https://sso", "alice")
	must(t, err)
	if !c.IsZero() {
		t.Fatalf("cut-off %v before any", c)
	}
	t1 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	t2 := t1.Add(30 * time.Minute)
	must(t, s.SetTokenCutoff(ctx, "https://sso", "alice", t2))
	// An earlier cut-off does not undo a later one.
	must(t, s.SetTokenCutoff(ctx, "https://sso", "alice", t1))
	must(t, s.SetTokenCutoff(ctx, "https://sso", "", t1))
	for _, tc := range []struct {
		iss, user string
		want      time.Time
	}{
		{"https://sso", "alice", t2},
		{"https://sso", "bob", t1},
		{"https://sso", "", t1},
		{"other", "alice", time.Time{}},
	} {
		got, err := s.TokenCutoff(ctx, tc.iss, tc.user)
		must(t, err)
		if !got.Equal(tc.want) {
			t.Errorf("cut-off %s/%s = %v, want %v", tc.iss, tc.user, got, tc.want)
		}
	}
	wantErr := func(err error) {
		t.Helper()
		if err == nil {
			t.Fatal("bad cut-off accepted")
		}
	}
	wantErr(s.SetTokenCutoff(ctx, "", "alice", t1))
	wantErr(s.SetTokenCutoff(ctx, "iss", "alice", time.Time{}))
	cs, err := s.ChangesSince(ctx, 0, 0)
	must(t, err)
	if len(cs) != 3 || cs[0].Kind != store.ChangeTokenCutoff {
		t.Fatalf("changes %+v", cs)
	}
	if iss, user := store.ParseCutoffSubject(cs[0].Subject); iss != "https://sso" || user != "alice" {
		t.Fatalf("cut-off subject %q", cs[0].Subject)
	}
}

func testCertRevocations(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	if ok, err := s.CertRevoked(ctx, "serial:01", "sha256:ab"); err != nil || ok {
		t.Fatalf("unknown certificate revoked: %v %v", ok, err)
	}
	exp := time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)
	must(t, s.RevokeCert(ctx, store.CertRevocation{Ref: "serial:01", User: "alice"}))
	must(t, s.RevokeCert(ctx, store.CertRevocation{Ref: "sha256:ab", User: "bob", ExpiresAt: exp}))
	must(t, s.RevokeCert(ctx, store.CertRevocation{Ref: "sha256:old", ExpiresAt: time.Now().Add(-2 * time.Hour)}))
	must(t, s.RevokeCert(ctx, store.CertRevocation{Ref: "sha256:ab", User: "bob", ExpiresAt: time.Now()}))
	if s.RevokeCert(ctx, store.CertRevocation{Ref: "01"}) == nil {
		t.Fatal("a reference without serial: or sha256: accepted")
	}
	for _, refs := range [][]string{{"serial:01"}, {"serial:99", "sha256:ab"}} {
		if ok, err := s.CertRevoked(ctx, refs...); err != nil || !ok {
			t.Fatalf("%v not revoked: %v", refs, err)
		}
	}
	list, err := s.ListCertRevocations(ctx)
	must(t, err)
	if len(list) != 2 || list[0].Ref != "serial:01" || !list[0].ExpiresAt.IsZero() || list[1].Ref != "sha256:ab" || !list[1].ExpiresAt.Equal(exp) || list[1].User != "bob" {
		t.Fatalf("revocations %+v", list)
	}
	cs, err := s.ChangesSince(ctx, 0, 0)
	must(t, err)
	if len(cs) != 4 || cs[0].Kind != store.ChangeCertRevoked || cs[0].Subject != "serial:01" {
		t.Fatalf("changes %+v", cs)
	}
}

// testDomainChanges: a domain losing its verification is logged, so that
// servers stop serving it; checks that change nothing are not.
func testDomainChanges(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "a.example.org", User: "alice", Token: "t"})
	must(t, err)
	now := time.Now()
	must(t, s.SetDomainVerified(ctx, "a.example.org", false, now))
	must(t, s.SetDomainVerified(ctx, "a.example.org", true, now))
	must(t, s.SetDomainVerified(ctx, "a.example.org", true, now))
	must(t, s.SetDomainVerified(ctx, "a.example.org", false, now))
	must(t, s.SetDomainVerified(ctx, "a.example.org", false, now))
	wantErr(t, s.SetDomainVerified(ctx, "b.example.org", false, now), store.ErrNotFound)
	cs, err := s.ChangesSince(ctx, 0, 0)
	must(t, err)
	if len(cs) != 1 || cs[0].Kind != store.ChangeDomainChanged || cs[0].Subject != "a.example.org" {
		t.Fatalf("changes %+v", cs)
	}
}

func testReservations(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		_, err := s.CreateUser(ctx, u)
		must(t, err)
	}
	must(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "shop", User: "alice"}))
	wantErr(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "shop", User: "bob"}), store.ErrExists)
	wantErr(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "x", User: "nobody"}), store.ErrNotFound)
	must(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedPort, Name: "20022", User: "bob"}))
	if err := s.Reserve(ctx, store.Reservation{Kind: store.ReservedPort, Name: "70000", User: "bob"}); err == nil {
		t.Fatal("port 70000 accepted")
	}
	owner, err := s.ReservationOwner(ctx, store.ReservedSubdomain, "shop")
	must(t, err)
	if owner != "alice" {
		t.Fatalf("owner %q", owner)
	}
	owner, err = s.ReservationOwner(ctx, store.ReservedPort, "20022")
	must(t, err)
	if owner != "bob" {
		t.Fatalf("port owner %q", owner)
	}
	_, err = s.ReservationOwner(ctx, store.ReservedSubdomain, "free")
	wantErr(t, err, store.ErrNotFound)
	all, err := s.ListReservations(ctx, "")
	must(t, err)
	if len(all) != 2 || all[0].Kind != store.ReservedPort || all[0].Name != "20022" || all[1].Name != "shop" || all[1].User != "alice" {
		t.Fatalf("all reservations %+v", all)
	}
	mine, err := s.ListReservations(ctx, "alice")
	must(t, err)
	if len(mine) != 1 || mine[0].Name != "shop" || mine[0].CreatedAt.IsZero() {
		t.Fatalf("alice's reservations %+v", mine)
	}
	must(t, s.Unreserve(ctx, store.ReservedSubdomain, "shop"))
	wantErr(t, s.Unreserve(ctx, store.ReservedSubdomain, "shop"), store.ErrNotFound)
	must(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "shop", User: "bob"}))
}

func testDomains(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	d, err := s.AddDomain(ctx, store.Domain{Hostname: "App.Example.org.", User: "alice", Token: "tok"})
	must(t, err)
	if d.Hostname != "app.example.org" || d.Verified() {
		t.Fatalf("added %+v", d)
	}
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "app.example.org", User: "alice", Token: "tok2"})
	wantErr(t, err, store.ErrExists)
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "b.example.org", User: "nobody", Token: "t"})
	wantErr(t, err, store.ErrNotFound)

	at := time.Now().Truncate(time.Millisecond)
	must(t, s.SetDomainVerified(ctx, "app.example.org", false, at))
	d, err = s.GetDomain(ctx, "APP.example.org")
	must(t, err)
	if d.Verified() || !d.CheckedAt.Equal(at) || d.Token != "tok" || d.User != "alice" {
		t.Fatalf("after failed check %+v", d)
	}
	must(t, s.SetDomainVerified(ctx, "app.example.org", true, at.Add(time.Second)))
	must(t, s.SetDomainVerified(ctx, "app.example.org", true, at.Add(time.Minute)))
	d, _ = s.GetDomain(ctx, "app.example.org")
	if !d.VerifiedAt.Equal(at.Add(time.Second)) || !d.CheckedAt.Equal(at.Add(time.Minute)) {
		t.Fatalf("after checks %+v", d)
	}
	// A record that disappears un-verifies the domain.
	must(t, s.SetDomainVerified(ctx, "app.example.org", false, at.Add(2*time.Minute)))
	d, _ = s.GetDomain(ctx, "app.example.org")
	if d.Verified() {
		t.Fatalf("still verified: %+v", d)
	}
	wantErr(t, s.SetDomainVerified(ctx, "zzz.example.org", true, at), store.ErrNotFound)
	list, err := s.ListDomains(ctx, "alice")
	must(t, err)
	if len(list) != 1 || list[0].Hostname != "app.example.org" {
		t.Fatalf("list %+v", list)
	}
	must(t, s.RemoveDomain(ctx, "app.example.org"))
	wantErr(t, s.RemoveDomain(ctx, "app.example.org"), store.ErrNotFound)
	_, err = s.GetDomain(ctx, "app.example.org")
	wantErr(t, err, store.ErrNotFound)
}

func testDeleteUser(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_a", User: "alice", Hash: hash("a")})
	must(t, err)
	must(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedSubdomain, Name: "shop", User: "alice"}))
	must(t, s.Reserve(ctx, store.Reservation{Kind: store.ReservedPort, Name: "20001", User: "alice"}))
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "a.example.org", User: "alice", Token: "t"})
	must(t, err)
	must(t, s.DeleteUser(ctx, "alice"))
	if _, _, err := s.APIKeyByHash(ctx, hash("a")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key survived its user: %v", err)
	}
	if r, _ := s.ListReservations(ctx, ""); len(r) != 0 {
		t.Fatalf("reservations survived: %+v", r)
	}
	if _, err := s.GetDomain(ctx, "a.example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("domain survived: %v", err)
	}
	// The name is free again, with nothing attached.
	_, err = s.CreateUser(ctx, "alice")
	must(t, err)
	if k, _ := s.ListAPIKeys(ctx, "alice"); len(k) != 0 {
		t.Fatalf("new alice has keys %+v", k)
	}
}

func testChangeLog(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	last, err := s.LastChange(ctx)
	must(t, err)
	if last != 0 {
		t.Fatalf("empty log at %d", last)
	}
	_, err = s.CreateUser(ctx, "alice")
	must(t, err)
	_, err = s.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_a", User: "alice", Hash: hash("a")})
	must(t, err)
	_, err = s.AddDomain(ctx, store.Domain{Hostname: "a.example.org", User: "alice", Token: "t"})
	must(t, err)
	must(t, s.RevokeAPIKey(ctx, "key_a", time.Now()))
	must(t, s.RevokeToken(ctx, "jti-9", "alice", time.Now().Add(time.Hour)))
	must(t, s.RemoveDomain(ctx, "a.example.org"))
	must(t, s.DeleteUser(ctx, "alice"))
	cs, err := s.ChangesSince(ctx, 0, 0)
	must(t, err)
	want := []store.ChangeKind{store.ChangeKeyRevoked, store.ChangeTokenRevoked, store.ChangeDomainRemoved, store.ChangeUserDeleted}
	var got []store.ChangeKind
	for i, c := range cs {
		got = append(got, c.Kind)
		if i > 0 && c.Seq <= cs[i-1].Seq {
			t.Fatalf("sequence not rising: %+v", cs)
		}
		if time.Since(c.At) > time.Minute {
			t.Fatalf("change time %v", c.At)
		}
	}
	if !slices.Equal(got, want) || cs[0].Subject != "key_a" || cs[1].Subject != "jti-9" || cs[2].Subject != "a.example.org" || cs[3].Subject != "alice" {
		t.Fatalf("changes %+v", cs)
	}
	last, err = s.LastChange(ctx)
	must(t, err)
	if last != cs[3].Seq {
		t.Fatalf("last %d, want %d", last, cs[3].Seq)
	}
	tail, err := s.ChangesSince(ctx, cs[1].Seq, 1)
	must(t, err)
	if len(tail) != 1 || tail[0].Seq != cs[2].Seq {
		t.Fatalf("since %d limit 1: %+v", cs[1].Seq, tail)
	}
}

// testTwoHandles uses the database from two handles, as the server and
// `porthole admin` do from two processes.
func testTwoHandles(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	other := open(t, h)
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	_, err = other.CreateAPIKey(ctx, store.NewAPIKey{ID: "key_a", User: "alice", Hash: hash("a")})
	must(t, err)
	k, _, err := s.APIKeyByHash(ctx, hash("a"))
	must(t, err)
	if k.User != "alice" {
		t.Fatalf("key %+v", k)
	}
	mark, err := s.LastChange(ctx)
	must(t, err)
	must(t, other.RevokeAPIKey(ctx, "key_a", time.Now()))
	cs, err := s.ChangesSince(ctx, mark, 10)
	must(t, err)
	if len(cs) != 1 || cs[0].Subject != "key_a" {
		t.Fatalf("revocation in the other handle not seen: %+v", cs)
	}
	if n, ok := s.(store.Notifier); ok {
		nctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := n.Notify(nctx)
		// The listener connects asynchronously: keep changing until a
		// notification arrives.
		deadline := time.After(10 * time.Second)
		for i := 0; ; i++ {
			must(t, other.RevokeToken(ctx, fmt.Sprintf("jti-%d", i), "alice", time.Now().Add(time.Hour)))
			select {
			case <-ch:
				return
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatal("no change notification within 10s")
			}
		}
	}
}

func testConcurrentWriters(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	other := open(t, h)
	_, err := s.CreateUser(ctx, "alice")
	must(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = other
			}
			id := fmt.Sprintf("key_%02d", i)
			if _, err := st.CreateAPIKey(ctx, store.NewAPIKey{ID: id, User: "alice", Hash: hash(id)}); err != nil {
				errs <- err
				return
			}
			if err := st.RevokeAPIKey(ctx, id, time.Now()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	cs, err := s.ChangesSince(ctx, 0, 0)
	must(t, err)
	if len(cs) != 40 {
		t.Fatalf("%d changes logged, want 40", len(cs))
	}
}

func testSchema(t *testing.T, h Harness, s store.Store) {
	ctx := context.Background()
	v, err := s.SchemaVersion(ctx)
	must(t, err)
	if v != store.LatestSchemaVersion() {
		t.Fatalf("schema version %d, want %d", v, store.LatestSchemaVersion())
	}
	// Opening again does not re-run migrations.
	again := open(t, h)
	_, err = s.CreateUser(ctx, "alice")
	must(t, err)
	if _, err := again.GetUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	must(t, h.Exec(ctx, fmt.Sprintf("INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0)", v+1)))
	_, err = h.Open(ctx)
	wantErr(t, err, store.ErrSchemaTooNew)
}
