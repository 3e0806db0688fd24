package registry

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a manual clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// endpoint stands for a live tunnel.
type endpoint struct{ name string }

var (
	alice  = Owner{User: "alice", Client: "laptop"}
	alice2 = Owner{User: "alice", Client: "desktop"}
	bob    = Owner{User: "bob", Client: "laptop"}
)

func TestBindLookup(t *testing.T) {
	r := NewMemory[*endpoint](newClock().now)
	var _ Registry[*endpoint] = r
	if _, ok := r.Lookup("a.example"); ok {
		t.Fatal("empty registry has a claim")
	}
	e := &endpoint{"e1"}
	c, err := r.Bind("a.example", alice, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "a.example" || c.Owner != alice || c.Endpoint != e || !c.Active() || c.Generation == 0 {
		t.Fatalf("claim %+v", c)
	}
	got, ok := r.Lookup("a.example")
	if !ok || got != c {
		t.Fatalf("Lookup = %+v %v", got, ok)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d", r.Len())
	}
	if _, err := r.Bind("a.example", bob, &endpoint{"e2"}); !errors.Is(err, ErrTaken) {
		t.Fatalf("another owner's bind of a live name: %v, want ErrTaken", err)
	}
	if _, err := r.Bind("a.example", alice2, &endpoint{"e3"}); !errors.Is(err, ErrTaken) {
		t.Fatalf("the same user from another client: %v, want ErrTaken", err)
	}
	if got, _ := r.Lookup("a.example"); got.Endpoint != e {
		t.Fatal("a refused bind changed the claim")
	}
}

func TestGraceHoldsNameForOwner(t *testing.T) {
	clk := newClock()
	r := NewMemory[*endpoint](clk.now)
	e1 := &endpoint{"e1"}
	c1, _ := r.Bind("a", alice, e1)
	r.Release("a", e1, time.Minute)

	held, ok := r.Lookup("a")
	if !ok || held.Active() || held.Owner != alice {
		t.Fatalf("after release with grace: %+v %v, want a held claim for alice", held, ok)
	}
	if !held.HeldUntil.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("HeldUntil %v, want now+1m", held.HeldUntil)
	}
	if held.Generation <= c1.Generation {
		t.Fatalf("release did not raise the generation: %d then %d", c1.Generation, held.Generation)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, held claims count", r.Len())
	}

	clk.advance(59 * time.Second)
	if _, err := r.Bind("a", bob, &endpoint{"b"}); !errors.Is(err, ErrTaken) {
		t.Fatalf("bob took a name held for alice: %v", err)
	}
	e2 := &endpoint{"e2"}
	c2, err := r.Bind("a", alice, e2)
	if err != nil {
		t.Fatalf("the owner's reconnect within grace: %v", err)
	}
	if c2.Endpoint != e2 || c2.Generation <= held.Generation || !c2.HeldUntil.IsZero() {
		t.Fatalf("reclaimed claim %+v", c2)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d after reclaim", r.Len())
	}
}

func TestGraceExpires(t *testing.T) {
	clk := newClock()
	r := NewMemory[*endpoint](clk.now)
	e1 := &endpoint{"e1"}
	r.Bind("a", alice, e1)
	r.Release("a", e1, 10*time.Second)
	clk.advance(10 * time.Second) // the lease ends at exactly now
	if c, ok := r.Lookup("a"); ok {
		t.Fatalf("expired lease still reported: %+v", c)
	}
	c, err := r.Bind("a", bob, &endpoint{"b"})
	if err != nil || c.Owner != bob {
		t.Fatalf("bind after the grace period: %+v %v", c, err)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (the expired claim is replaced, not added)", r.Len())
	}
}

func TestReleaseWithoutGraceFrees(t *testing.T) {
	r := NewMemory[*endpoint](newClock().now)
	e := &endpoint{"e"}
	r.Bind("a", alice, e)
	r.Release("a", e, 0)
	if _, ok := r.Lookup("a"); ok || r.Len() != 0 {
		t.Fatal("release without grace must free the name")
	}
	if _, err := r.Bind("a", bob, &endpoint{"b"}); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseByStaleEndpointIsIgnored(t *testing.T) {
	r := NewMemory[*endpoint](newClock().now)
	old, cur := &endpoint{"old"}, &endpoint{"new"}
	r.Bind("a", alice, old)
	// The same client reconnects before its old session was found dead.
	c, err := r.Bind("a", alice, cur)
	if err != nil || c.Endpoint != cur {
		t.Fatalf("rebind by the same owner: %+v %v", c, err)
	}
	// The old session's cleanup must not take the name from the new one.
	r.Release("a", old, time.Minute)
	r.Release("a", old, 0)
	got, ok := r.Lookup("a")
	if !ok || got.Endpoint != cur {
		t.Fatalf("stale release changed the claim: %+v %v", got, ok)
	}
	r.Release("missing", cur, 0) // no claim: nothing happens
	if r.Len() != 1 {
		t.Fatalf("Len = %d", r.Len())
	}
}

func TestGenerationRises(t *testing.T) {
	clk := newClock()
	r := NewMemory[*endpoint](clk.now)
	var last uint64
	check := func(c *Claim[*endpoint]) {
		t.Helper()
		if c.Generation <= last {
			t.Fatalf("generation %d after %d", c.Generation, last)
		}
		last = c.Generation
	}
	e := &endpoint{"1"}
	c, _ := r.Bind("a", alice, e)
	check(c)
	c, _ = r.Bind("b", alice, e)
	check(c)
	r.Release("a", e, time.Minute)
	c, _ = r.Lookup("a")
	check(c)
	e2 := &endpoint{"2"}
	c, _ = r.Bind("a", alice, e2)
	check(c)
}

func TestSweep(t *testing.T) {
	clk := newClock()
	r := NewMemory[*endpoint](clk.now)
	live := &endpoint{"live"}
	r.Bind("live", alice, live)
	for i := range 5 {
		e := &endpoint{fmt.Sprint(i)}
		key := fmt.Sprintf("held%d", i)
		r.Bind(key, bob, e)
		r.Release(key, e, time.Duration(i+1)*time.Second)
	}
	if n := r.Sweep(); n != 0 {
		t.Fatalf("Sweep removed %d claims still within grace", n)
	}
	clk.advance(3 * time.Second)
	if n := r.Sweep(); n != 3 {
		t.Fatalf("Sweep after 3s removed %d, want 3", n)
	}
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (live + 2 held)", r.Len())
	}
	clk.advance(time.Hour)
	if n := r.Sweep(); n != 2 {
		t.Fatalf("Sweep after an hour removed %d, want 2", n)
	}
	if _, ok := r.Lookup("live"); !ok || r.Len() != 1 {
		t.Fatal("Sweep removed a live claim")
	}
}

// TestConcurrentBind races many owners for the same names: exactly one wins
// each, and readers never see a torn claim (run with -race).
func TestConcurrentBind(t *testing.T) {
	r := NewMemory[*endpoint](newClock().now)
	const names, racers = 20, 8
	wins := make([]atomic.Int32, names)
	var wg sync.WaitGroup
	stop, readerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := range names {
				if c, ok := r.Lookup(fmt.Sprint(i)); ok && (c.Endpoint == nil || c.Key != fmt.Sprint(i)) {
					t.Errorf("torn claim %+v", c)
				}
			}
		}
	}()
	for o := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := Owner{Client: fmt.Sprint(o)}
			for i := range names {
				if _, err := r.Bind(fmt.Sprint(i), owner, &endpoint{fmt.Sprint(o)}); err == nil {
					wins[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readerDone
	for i := range names {
		if w := wins[i].Load(); w != 1 {
			t.Errorf("name %d won %d times", i, w)
		}
	}
	if r.Len() != names {
		t.Fatalf("Len = %d", r.Len())
	}
}

func TestDefaultClock(t *testing.T) {
	r := NewMemory[*endpoint](nil)
	e := &endpoint{"e"}
	r.Bind("a", alice, e)
	r.Release("a", e, time.Hour)
	if c, ok := r.Lookup("a"); !ok || time.Until(c.HeldUntil) < 59*time.Minute {
		t.Fatalf("with the real clock a 1h lease should be held: %+v %v", c, ok)
	}
}
