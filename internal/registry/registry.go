package registry

import (
	"errors"
	"sync"
	"time"
)

// Owner identifies who holds a claim. Two owners are the same when both
// fields match: the user (empty without authentication) and the client
// instance, whose secret resume token the server maps to Client.
type Owner struct {
	User   string
	Client string
}

// Claim is one name's binding. Its fields are immutable: every change
// installs a new Claim, so a reader holding one sees a consistent snapshot.
type Claim[E comparable] struct {
	Key        string
	Owner      Owner
	Generation uint64
	// Endpoint serves the name; the zero value means the owner is away and
	// the name is held for it until HeldUntil.
	Endpoint  E
	HeldUntil time.Time
	// Node names the cluster node that holds the claim when it is not
	// this one (Endpoint is then zero); NodeAddr is that node's cluster
	// address, empty while its lease has lapsed. Both are empty on a
	// single server.
	Node     string
	NodeAddr string
}

// Active reports whether the claim has a live endpoint.
func (c *Claim[E]) Active() bool {
	var zero E
	return c.Endpoint != zero
}

// ErrTaken means another owner holds the name, live or within its grace period.
var ErrTaken = errors.New("name is in use by another client")

// ErrUnavailable means the registry cannot take or give up names right
// now (a shared database is unreachable); the caller may retry. Names
// already bound keep being served.
var ErrUnavailable = errors.New("the name registry is unavailable")

// Shared is implemented by registries that several servers share, so
// that per-user limits hold across the cluster. OtherClaims counts the
// live claims of user held at other nodes by clients other than except;
// OtherClients counts those clients.
type Shared interface {
	OtherClaims(user string, except Owner) (int, error)
	OtherClients(user string, except Owner) (int, error)
}

// Registry is what the server needs from a name registry.
type Registry[E comparable] interface {
	// Lookup returns the claim for key. It must not block.
	Lookup(key string) (*Claim[E], bool)
	// Bind gives key to owner's endpoint e: a new claim, the owner's own
	// claim back (a reconnect within the grace period), or ErrTaken.
	Bind(key string, owner Owner, e E) (*Claim[E], error)
	// Release detaches e from key. With grace > 0 the name stays held for
	// the same owner until then; otherwise it is freed. Releasing an
	// endpoint that no longer holds key does nothing.
	Release(key string, e E, grace time.Duration)
	// Len returns the number of claims, held ones included.
	Len() int
	// Sweep forgets held claims whose lease has expired and returns how
	// many; the server calls it periodically.
	Sweep() int
}

var _ Registry[*int] = (*Memory[*int])(nil)

// Memory is the single-node registry. The zero value is not usable; call
// NewMemory.
type Memory[E comparable] struct {
	now    func() time.Time
	mu     sync.Mutex // serializes writers; readers use claims alone
	claims sync.Map   // key -> *Claim[E]
	gen    uint64
	n      int
}

// NewMemory returns an empty registry using now as its clock (time.Now if nil).
func NewMemory[E comparable](now func() time.Time) *Memory[E] {
	if now == nil {
		now = time.Now
	}
	return &Memory[E]{now: now}
}

// Lookup implements Registry. A held claim whose lease has expired is
// reported as absent.
func (m *Memory[E]) Lookup(key string) (*Claim[E], bool) {
	v, ok := m.claims.Load(key)
	if !ok {
		return nil, false
	}
	c := v.(*Claim[E])
	if !c.Active() && !m.now().Before(c.HeldUntil) {
		return nil, false
	}
	return c, true
}

// Bind implements Registry.
func (m *Memory[E]) Bind(key string, owner Owner, e E) (*Claim[E], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.claims.Load(key); ok {
		old := v.(*Claim[E])
		expired := !old.Active() && !m.now().Before(old.HeldUntil)
		if old.Owner != owner && !expired {
			return nil, ErrTaken
		}
		m.n--
	}
	m.gen++
	c := &Claim[E]{Key: key, Owner: owner, Generation: m.gen, Endpoint: e}
	m.claims.Store(key, c)
	m.n++
	return c, nil
}

// Release implements Registry.
func (m *Memory[E]) Release(key string, e E, grace time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.claims.Load(key)
	if !ok {
		return
	}
	old := v.(*Claim[E])
	if old.Endpoint != e {
		return
	}
	if grace <= 0 {
		m.claims.Delete(key)
		m.n--
		return
	}
	m.gen++
	var zero E
	m.claims.Store(key, &Claim[E]{Key: key, Owner: old.Owner, Generation: m.gen, Endpoint: zero, HeldUntil: m.now().Add(grace)})
}

// Sweep deletes held claims whose lease has expired and returns how many.
// The server calls it periodically so memory does not grow with names that
// were used once.
func (m *Memory[E]) Sweep() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	removed := 0
	m.claims.Range(func(k, v any) bool {
		c := v.(*Claim[E])
		if !c.Active() && !now.Before(c.HeldUntil) {
			m.claims.Delete(k)
			m.n--
			removed++
		}
		return true
	})
	return removed
}

// Len implements Registry.
func (m *Memory[E]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}
