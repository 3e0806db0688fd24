package cluster

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/registry"
)

type endpoint struct{ name string }

var (
	alice = registry.Owner{User: "alice", Client: "laptop"}
	bob   = registry.Owner{User: "bob", Client: "laptop"}
)

// TestRaceOneName races two nodes for the same name 1,000 times: exactly
// one wins each round, and the database and both maps agree on which.
func TestRaceOneName(t *testing.T) {
	dbURL, db := testDB(t)
	// Production lease timings: the fast ones of the fencing tests would
	// fence a node whose renewal a loaded machine delays, which is not what
	// this test is about.
	slow := func(name string) Config {
		c := fastConfig(t, dbURL, name, time.Minute)
		c.RenewEvery, c.FenceAfter, c.LeaseTTL, c.OpTimeout = 2*time.Second, 6*time.Second, 10*time.Second, 5*time.Second
		return c
	}
	na := join(t, slow("node-a"))
	nb := join(t, slow("node-b"))
	ra, rb := NewRegistry[*endpoint](na), NewRegistry[*endpoint](nb)
	ea, eb := &endpoint{"a"}, &endpoint{"b"}
	const rounds = 1000
	winsA, winsB := 0, 0
	for i := range rounds {
		key := fmt.Sprintf("race%d.example.test", i)
		var wg sync.WaitGroup
		var errA, errB error
		wg.Add(2)
		go func() { defer wg.Done(); _, errA = ra.Bind(key, alice, ea) }()
		go func() { defer wg.Done(); _, errB = rb.Bind(key, bob, eb) }()
		wg.Wait()
		switch {
		case errA == nil && errB == nil:
			t.Fatalf("round %d: both nodes bound %s", i, key)
		case errA == nil && errors.Is(errB, registry.ErrTaken):
			winsA++
		case errB == nil && errors.Is(errA, registry.ErrTaken):
			winsB++
		default:
			t.Fatalf("round %d: A %v, B %v", i, errA, errB)
		}
		ca, _ := ra.Lookup(key)
		cb, _ := rb.Lookup(key)
		servedA := ca != nil && ca.Endpoint != nil
		servedB := cb != nil && cb.Endpoint != nil
		if servedA == servedB {
			t.Fatalf("round %d: served at A %v, at B %v", i, servedA, servedB)
		}
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM cluster_claims`).Scan(&rows); err != nil || rows != rounds {
		t.Fatalf("claims rows %d (%v), want %d", rows, err, rounds)
	}
	t.Logf("A won %d, B won %d", winsA, winsB)
}

// TestNotifyFeedsMap: a bind, a release with grace and a release without
// reach the other node's map through NOTIFY, without a reload.
func TestNotifyFeedsMap(t *testing.T) {
	dbURL, _ := testDB(t)
	na := join(t, fastConfig(t, dbURL, "node-a", time.Minute))
	nb := join(t, fastConfig(t, dbURL, "node-b", time.Minute))
	ra, rb := NewRegistry[*endpoint](na), NewRegistry[*endpoint](nb)
	// Join's reload, then the listener's once it is connected.
	eventually(t, 5*time.Second, "B's listener is up", func() bool { return nb.metrics.reloadCount() >= 2 })
	eventually(t, 5*time.Second, "A's listener is up", func() bool { return na.metrics.reloadCount() >= 2 })
	reloads := nb.metrics.reloadCount()
	e := &endpoint{"a"}
	c, err := ra.Bind("app.example.test", alice, e)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B sees A's claim", func() bool {
		got, ok := rb.Lookup("app.example.test")
		return ok && got.Node == "node-a" && got.NodeAddr == na.Addr() && got.Generation == c.Generation && got.Endpoint == nil
	})
	ra.Release("app.example.test", e, time.Minute)
	eventually(t, 5*time.Second, "B sees the name held", func() bool {
		got, ok := rb.Lookup("app.example.test")
		return ok && !got.HeldUntil.IsZero() && got.Node == "" && got.Owner == alice
	})
	if _, err := rb.Bind("app.example.test", bob, &endpoint{"b"}); !errors.Is(err, registry.ErrTaken) {
		t.Fatalf("bob took a name held for alice: %v", err)
	}
	// Alice's client comes back at node B within the grace period.
	if _, err := rb.Bind("app.example.test", alice, &endpoint{"b"}); err != nil {
		t.Fatalf("alice reconnecting at another node: %v", err)
	}
	eventually(t, 5*time.Second, "A sees the name at B", func() bool {
		got, ok := ra.Lookup("app.example.test")
		return ok && got.Node == "node-b"
	})
	c2, _ := rb.Lookup("app.example.test")
	rb.Release("app.example.test", c2.Endpoint, 0)
	eventually(t, 5*time.Second, "A sees the name freed", func() bool {
		_, ok := ra.Lookup("app.example.test")
		return !ok
	})
	if got := nb.metrics.reloadCount(); got != reloads {
		t.Fatalf("B reloaded %v times; the changes must come by NOTIFY", got-reloads)
	}
}

// TestReloadAfterListenerReconnect: a change made while a node's listener
// was away (here, written without a notification) appears after the
// listener's connection is killed and comes back.
func TestReloadAfterListenerReconnect(t *testing.T) {
	dbURL, db := testDB(t)
	nb := join(t, fastConfig(t, dbURL, "node-b", time.Minute))
	rb := NewRegistry[*endpoint](nb)
	join(t, fastConfig(t, dbURL, "node-a", time.Minute))
	if _, err := db.Exec(`INSERT INTO cluster_claims (key, owner_user, owner_client, node, generation, held_until, updated_at)
		VALUES ('silent.example.test', 'alice', 'laptop', 'node-a', nextval('cluster_generation'), NULL, 0)`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, ok := rb.Lookup("silent.example.test"); ok {
		t.Fatal("a change without a notification reached the map before any reload")
	}
	before := nb.metrics.reconnectCount()
	var killed int
	if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query LIKE 'LISTEN%'`, nb.listenAppName()).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("killing B's listener: %d killed, %v", killed, err)
	}
	eventually(t, 10*time.Second, "B reloads after reconnecting", func() bool {
		got, ok := rb.Lookup("silent.example.test")
		return ok && got.Node == "node-a" && got.NodeAddr != ""
	})
	if nb.metrics.reconnectCount() <= before {
		t.Fatal("the listener's reconnect was not counted")
	}
}

// TestNodeNameInUse: a second process under a live node's name is refused.
func TestNodeNameInUse(t *testing.T) {
	dbURL, _ := testDB(t)
	join(t, fastConfig(t, dbURL, "node-a", time.Minute))
	_, err := Join(t.Context(), fastConfig(t, dbURL, "node-a", time.Minute))
	if !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second node-a: %v, want ErrNameInUse", err)
	}
}

// TestOtherClaimsAndClients: what a node counts of a user at the other
// nodes, for the per-user tunnel and session limits: live claims and the
// clients holding them, not the asking client's own, not held names, not
// those of a node whose lease ran out.
func TestOtherClaimsAndClients(t *testing.T) {
	dbURL, _ := testDB(t)
	na := join(t, fastConfig(t, dbURL, "node-a", time.Minute))
	nb := join(t, fastConfig(t, dbURL, "node-b", time.Minute))
	ra, rb := NewRegistry[*endpoint](na), NewRegistry[*endpoint](nb)
	laptop := registry.Owner{User: "alice", Client: "laptop"}
	desk := registry.Owner{User: "alice", Client: "desk"}
	phone := registry.Owner{User: "alice", Client: "phone"}
	for _, b := range []struct {
		key   string
		owner registry.Owner
	}{{"l1.example.test", laptop}, {"l2.example.test", laptop}, {"d1.example.test", desk}, {"b1.example.test", bob}} {
		if _, err := ra.Bind(b.key, b.owner, &endpoint{b.key}); err != nil {
			t.Fatal(err)
		}
	}
	// A held name does not count: its client is away.
	e := &endpoint{"d2"}
	if _, err := ra.Bind("d2.example.test", desk, e); err != nil {
		t.Fatal(err)
	}
	ra.Release("d2.example.test", e, time.Minute)
	count := func(except registry.Owner) (int, int) {
		t.Helper()
		claims, err := rb.OtherClaims("alice", except)
		if err != nil {
			t.Fatal(err)
		}
		clients, err := rb.OtherClients("alice", except)
		if err != nil {
			t.Fatal(err)
		}
		return claims, clients
	}
	if c, k := count(phone); c != 3 || k != 2 {
		t.Fatalf("for a new client: %d claims of %d clients, want 3 of 2", c, k)
	}
	if c, k := count(laptop); c != 1 || k != 1 {
		t.Fatalf("for the laptop itself: %d claims of %d clients, want 1 of 1 (the desk's)", c, k)
	}
	// Node A's own names are not "other" to it.
	if c, err := ra.OtherClaims("alice", phone); err != nil || c != 0 {
		t.Fatalf("node A counting its own: %d %v", c, err)
	}
	// Node A dies: once its lease has run out its claims no longer count.
	na.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, k := count(phone)
		if c == 0 && k == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after node A's lease ran out: %d claims of %d clients still counted", c, k)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRefreshBounded: visitors of a name whose node cannot be reached
// make the forwarding node refresh the route; however many they are, the
// node sends at most 50 such queries a second (a burst of 50), the rest
// answered from the route map. With the database cut, each query that is
// sent fails, so the failures count the queries.
func TestRefreshBounded(t *testing.T) {
	dbURL, _ := testDB(t)
	proxy := newPGProxy(t, dbURL)
	n := join(t, fastConfig(t, withHost(t, dbURL, proxy.addr()), "node-a", time.Minute))
	r := NewRegistry[*endpoint](n)
	proxy.cut()
	start := time.Now()
	sent := 0
	for range 2000 {
		if r.Refresh("x.example.test") != nil {
			sent++
		}
	}
	bound := 50 + int(50*time.Since(start).Seconds()) + 1
	if sent == 0 || sent > bound {
		t.Fatalf("%d refresh queries reached the database in %v, want 1 to %d", sent, time.Since(start), bound)
	}
	t.Logf("%d of 2000 refreshes queried the database in %v", sent, time.Since(start).Round(time.Millisecond))
}
