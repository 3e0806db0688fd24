package cluster

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/registry"
)

// TestLeaseExpiryAndFencing cuts one node off the database: it refuses
// binds once fenced, stops serving its name before another owner can take
// it, the other node gives the name away only after the lease and the
// grace period, and the cut-off node, back on the database, gives up the
// name it lost.
func TestLeaseExpiryAndFencing(t *testing.T) {
	dbURL, _ := testDB(t)
	proxy := newPGProxy(t, dbURL)
	const grace = 500 * time.Millisecond
	na := join(t, fastConfig(t, withHost(t, dbURL, proxy.addr()), "node-a", grace))
	nb := join(t, fastConfig(t, dbURL, "node-b", grace))
	ra, rb := NewRegistry[*endpoint](na), NewRegistry[*endpoint](nb)
	ea := &endpoint{"a"}
	if _, err := ra.Bind("x.example.test", alice, ea); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B sees x at A", func() bool {
		c, ok := rb.Lookup("x.example.test")
		return ok && c.Node == "node-a"
	})

	proxy.cut()
	cutAt := time.Now()
	// Record when A stops serving x, from a reader that polls as the
	// request path would.
	var stoppedAt atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for stoppedAt.Load() == 0 {
			if c, ok := ra.Lookup("x.example.test"); !ok || c.Endpoint == nil {
				stoppedAt.Store(time.Now().UnixNano())
			}
			time.Sleep(time.Millisecond)
		}
	}()

	eventually(t, 5*time.Second, "A fences itself", na.Fenced)
	if _, err := ra.Bind("y.example.test", alice, ea); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("bind at a fenced node: %v, want ErrUnavailable", err)
	}
	// Bob at B: refused while A's lease and then the grace period last.
	var tookAt time.Time
	for {
		_, err := rb.Bind("x.example.test", bob, &endpoint{"b"})
		if err == nil {
			tookAt = time.Now()
			break
		}
		if !errors.Is(err, registry.ErrTaken) {
			t.Fatal(err)
		}
		if time.Since(cutAt) > 20*time.Second {
			t.Fatal("B never took the name of the lost node")
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-done
	if stop := time.Unix(0, stoppedAt.Load()); !stop.Before(tookAt) {
		t.Fatalf("A served x until %v, after B gave it to bob at %v", stop, tookAt)
	}
	if c, _ := ra.Lookup("x.example.test"); c != nil && c.Endpoint != nil {
		t.Fatal("the fenced node serves a name another owner holds")
	}
	if na.metrics.renewFailureCount() == 0 {
		t.Fatal("failed renewals were not counted")
	}

	proxy.heal()
	eventually(t, 10*time.Second, "A renews and learns x moved", func() bool {
		c, ok := ra.Lookup("x.example.test")
		return !na.Fenced() && ok && c.Node == "node-b" && c.Endpoint == nil
	})
	if _, err := ra.Bind("y.example.test", alice, ea); err != nil {
		t.Fatalf("bind after recovery: %v", err)
	}
}

// TestDatabaseDown: with the database unreachable from every node, the
// names bound before keep being served and routed from memory, new binds
// are refused as retryable, and everything works again once it is back.
func TestDatabaseDown(t *testing.T) {
	dbURL, _ := testDB(t)
	proxy := newPGProxy(t, dbURL)
	viaProxy := withHost(t, dbURL, proxy.addr())
	na := join(t, fastConfig(t, viaProxy, "node-a", time.Minute))
	nb := join(t, fastConfig(t, viaProxy, "node-b", time.Minute))
	ra, rb := NewRegistry[*endpoint](na), NewRegistry[*endpoint](nb)
	ea := &endpoint{"a"}
	if _, err := ra.Bind("x.example.test", alice, ea); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B sees x at A", func() bool {
		c, ok := rb.Lookup("x.example.test")
		return ok && c.Node == "node-a"
	})

	proxy.cut()
	if _, err := ra.Bind("y.example.test", alice, ea); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("bind with the database down: %v, want ErrUnavailable", err)
	}
	eventually(t, 5*time.Second, "A fences itself", na.Fenced)
	time.Sleep(time.Second) // well past the lease
	if c, ok := ra.Lookup("x.example.test"); !ok || c.Endpoint != ea {
		t.Fatalf("A stopped serving x while the database was down: %+v", c)
	}
	if c, ok := rb.Lookup("x.example.test"); !ok || c.Node != "node-a" {
		t.Fatalf("B forgot where x is while the database was down: %+v", c)
	}
	if _, err := rb.Bind("z.example.test", bob, &endpoint{"b"}); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("bind at B with the database down: %v", err)
	}

	proxy.heal()
	eventually(t, 10*time.Second, "binds work again", func() bool {
		_, err := ra.Bind("y.example.test", alice, ea)
		return err == nil
	})
	eventually(t, 10*time.Second, "B sees the new bind", func() bool {
		c, ok := rb.Lookup("y.example.test")
		return ok && c.Node == "node-a"
	})
	if c, ok := ra.Lookup("x.example.test"); !ok || c.Endpoint != ea {
		t.Fatalf("x after recovery: %+v", c)
	}
}
