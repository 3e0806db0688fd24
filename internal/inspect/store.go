package inspect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config sizes the recorder.
type Config struct {
	// Capacity is how many exchanges are kept; the oldest goes first.
	Capacity int `toml:"capacity"`
	// BodyLimit is how many bytes of each request and response body are
	// kept; the rest is counted, not stored. 0 keeps no body at all.
	BodyLimit ByteSize `toml:"body_limit"`
}

// DefaultConfig keeps the last 100 exchanges and 64 KiB of each body: at
// most 12.5 MiB of bodies, enough to read a typical JSON API exchange
// whole, small enough to leave on all the time.
func DefaultConfig() Config {
	return Config{Capacity: 100, BodyLimit: 64 << 10}
}

// MaxBodyLimit bounds BodyLimit so that a typo cannot make the recorder
// hold gigabytes.
const MaxBodyLimit = 64 << 20

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.Capacity < 1 || c.Capacity > 100000 {
		errs = append(errs, fmt.Errorf("inspect capacity %d: want 1 to 100000 exchanges", c.Capacity))
	}
	if c.BodyLimit < 0 || c.BodyLimit > MaxBodyLimit {
		errs = append(errs, fmt.Errorf("inspect body limit %s: want 0 to %s", c.BodyLimit, ByteSize(MaxBodyLimit)))
	}
	return errors.Join(errs...)
}

// Store is the ring of recent exchanges. It is safe for concurrent use:
// many forwarders write while the API reads.
type Store struct {
	cfg   Config
	clock func() time.Time

	mu       sync.Mutex
	ring     []*Exchange // ring[(id-1) % len(ring)] holds exchange id, when still kept
	lastID   uint64
	seq      uint64        // rises on every change, so readers can ask "what changed since"
	resetSeq uint64        // seq of the last Clear
	wake     chan struct{} // closed and replaced on every change

	evicted   atomic.Int64
	truncated atomic.Int64
	replays   atomic.Int64
	stored    atomic.Int64 // body bytes currently held by kept and in-flight exchanges

	finished func(x *Exchange) // metrics hook, set by newMetrics
}

// NewStore returns an empty store. clock may be nil (time.Now).
func NewStore(cfg Config, clock func() time.Time) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = time.Now
	}
	// seq starts at 1 so that 0 can mean "knows nothing yet" in Changes.
	return &Store{cfg: cfg, clock: clock, ring: make([]*Exchange, cfg.Capacity), seq: 1, wake: make(chan struct{})}, nil
}

// Config returns the store's configuration.
func (s *Store) Config() Config { return s.cfg }

// Exchange is one recorded request and its response. The forwarder that
// created it with Begin feeds it; everyone else reads Summary and Detail.
type Exchange struct {
	s  *Store
	id uint64

	// Set by Begin, never changed after.
	tunnel     string
	replayOf   uint64
	start      time.Time
	method     string
	uri        string
	host       string
	proto      string
	remoteAddr string
	reqHeader  http.Header

	// Guarded by s.mu.
	seq        uint64
	done       bool
	duration   time.Duration
	status     int
	respHeader http.Header
	errText    string

	// Guarded by mu: written chunk by chunk as the body streams.
	mu       sync.Mutex
	reqBody  capped
	respBody capped
	gone     bool // dropped from the ring
}

// replayKey marks a request that the inspector's Replay button sent; Begin
// records which exchange it repeats and reports the new exchange's id back.
type replayKey struct{}

type replayMark struct {
	of uint64
	id atomic.Uint64
}

// Begin records the start of a request on tunnel from remote (the
// visitor's address) and returns the exchange to feed. The request's
// headers are copied now; the body is recorded by WriteRequestBody as the
// proxy reads it.
func (s *Store) Begin(tunnel string, r *http.Request, remote string) *Exchange {
	x := &Exchange{
		s:          s,
		tunnel:     tunnel,
		start:      s.clock(),
		method:     r.Method,
		uri:        r.RequestURI,
		host:       r.Host,
		proto:      r.Proto,
		remoteAddr: remote,
		reqHeader:  r.Header.Clone(),
	}
	if x.uri == "" {
		x.uri = r.URL.RequestURI()
	}
	x.reqBody.limit = int(s.cfg.BodyLimit)
	x.respBody.limit = int(s.cfg.BodyLimit)
	mark, _ := r.Context().Value(replayKey{}).(*replayMark)
	if mark != nil {
		x.replayOf = mark.of
		s.replays.Add(1)
	}

	s.mu.Lock()
	s.lastID++
	x.id = s.lastID
	slot := int((x.id - 1) % uint64(len(s.ring)))
	if old := s.ring[slot]; old != nil {
		s.evicted.Add(1)
		s.drop(old)
	}
	s.ring[slot] = x
	s.changedLocked(x)
	s.mu.Unlock()

	if mark != nil {
		mark.id.Store(x.id)
	}
	return x
}

// ID returns the exchange's id, unique within the process.
func (x *Exchange) ID() uint64 { return x.id }

// WriteRequestBody records a chunk of the request body as it passes.
func (x *Exchange) WriteRequestBody(p []byte) {
	x.mu.Lock()
	n := x.reqBody.write(p)
	x.mu.Unlock()
	x.s.stored.Add(int64(n))
}

// WriteResponseBody records a chunk of the response body as it passes.
func (x *Exchange) WriteResponseBody(p []byte) {
	x.mu.Lock()
	n := x.respBody.write(p)
	x.mu.Unlock()
	x.s.stored.Add(int64(n))
}

// SetResponse records the response status and a copy of its headers.
// Informational (1xx) responses other than 101 are not final and are not
// kept: the next WriteHeader brings the real status.
func (x *Exchange) SetResponse(status int, h http.Header) {
	if status < 200 && status != http.StatusSwitchingProtocols {
		return
	}
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if x.status != 0 {
		return
	}
	x.status = status
	x.respHeader = h.Clone()
	s.changedLocked(x)
}

// SetUpgradeHeader records the headers of a 101 response, which a proxy
// writes only after taking over the connection (after SetResponse).
func (x *Exchange) SetUpgradeHeader(h http.Header) {
	s := x.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if x.status == http.StatusSwitchingProtocols {
		x.respHeader = h.Clone()
		s.changedLocked(x)
	}
}

// Finish marks the exchange complete. err, if any, is why it failed (the
// visitor went away, the local app broke the connection).
func (x *Exchange) Finish(err error) {
	s := x.s
	s.mu.Lock()
	if x.done {
		s.mu.Unlock()
		return
	}
	x.done = true
	x.duration = s.clock().Sub(x.start)
	if err != nil {
		// Status stays 0 when no response was sent at all.
		x.errText = err.Error()
	} else if x.status == 0 {
		// A handler that writes nothing answers 200 (net/http does so).
		x.status = http.StatusOK
	}
	s.changedLocked(x)
	s.mu.Unlock()

	x.mu.Lock()
	if !x.gone && x.reqBody.truncated() {
		s.truncated.Add(1)
	}
	if !x.gone && x.respBody.truncated() {
		s.truncated.Add(1)
	}
	x.mu.Unlock()
	if s.finished != nil {
		s.finished(x)
	}
}

// drop releases the bodies of an exchange that leaves the ring. One still
// in flight keeps counting sizes but stores nothing more: nobody can see it.
func (s *Store) drop(x *Exchange) {
	x.mu.Lock()
	held := int64(len(x.reqBody.buf) + len(x.respBody.buf))
	x.gone = true
	x.reqBody.buf, x.respBody.buf = nil, nil
	x.reqBody.limit, x.respBody.limit = 0, 0
	x.mu.Unlock()
	s.stored.Add(-held)
}

// changedLocked stamps x with a new change number and wakes the readers
// waiting in Changes.
func (s *Store) changedLocked(x *Exchange) {
	s.seq++
	if x != nil {
		x.seq = s.seq
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

// get returns a kept exchange.
func (s *Store) get(id uint64) *Exchange {
	if id == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.ring[int((id-1)%uint64(len(s.ring)))]
	if x == nil || x.id != id {
		return nil
	}
	return x
}

// Recent returns up to n summaries, newest first.
func (s *Store) Recent(n int) []Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Summary, 0, min(n, len(s.ring)))
	for id := s.lastID; id > 0 && len(out) < n; id-- {
		x := s.ring[int((id-1)%uint64(len(s.ring)))]
		if x == nil || x.id != id {
			break
		}
		out = append(out, x.summaryLocked())
	}
	return out
}

// Changes returns what changed after change number since: the exchanges
// stamped later (oldest first), or all kept exchanges with reset set when
// since is 0 or the store was cleared after it. It also returns the
// current change number and a channel closed at the next change.
func (s *Store) Changes(since uint64) (changed []Summary, reset bool, now uint64, wake <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reset = since == 0 || since < s.resetSeq || since > s.seq
	first := s.lastID - min(s.lastID, uint64(len(s.ring))) + 1
	for id := first; id <= s.lastID; id++ {
		x := s.ring[int((id-1)%uint64(len(s.ring)))]
		if x == nil || x.id != id {
			continue
		}
		if reset || x.seq > since {
			changed = append(changed, x.summaryLocked())
		}
	}
	return changed, reset, s.seq, s.wake
}

// Clear forgets every kept exchange. Exchanges still in flight finish
// unseen.
func (s *Store) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.ring {
		if x != nil {
			s.drop(x)
		}
		s.ring[i] = nil
	}
	s.changedLocked(nil)
	s.resetSeq = s.seq
}

// Stats are the recorder's own counters.
type Stats struct {
	Kept        int   `json:"kept"`
	Capacity    int   `json:"capacity"`
	BodyLimit   int64 `json:"body_limit_bytes"`
	Evicted     int64 `json:"evicted"`
	Truncated   int64 `json:"truncated_bodies"`
	Replays     int64 `json:"replays"`
	StoredBytes int64 `json:"stored_body_bytes"`
}

// Stats returns the recorder's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	kept := 0
	for _, x := range s.ring {
		if x != nil {
			kept++
		}
	}
	s.mu.Unlock()
	return Stats{
		Kept:        kept,
		Capacity:    s.cfg.Capacity,
		BodyLimit:   int64(s.cfg.BodyLimit),
		Evicted:     s.evicted.Load(),
		Truncated:   s.truncated.Load(),
		Replays:     s.replays.Load(),
		StoredBytes: s.stored.Load(),
	}
}

// withReplay marks ctx as a replay of exchange of.
func withReplay(ctx context.Context, of uint64) (context.Context, *replayMark) {
	m := &replayMark{of: of}
	return context.WithValue(ctx, replayKey{}, m), m
}

// capped keeps the first limit bytes written to it and counts the rest.
// It grows as data arrives, so a small body costs little however large
// the limit.
type capped struct {
	buf   []byte
	size  int64
	limit int
}

// write records p and returns how many bytes it stored.
func (c *capped) write(p []byte) int {
	c.size += int64(len(p))
	room := c.limit - len(c.buf)
	if room <= 0 {
		return 0
	}
	n := min(room, len(p))
	c.buf = append(c.buf, p[:n]...)
	return n
}

func (c *capped) truncated() bool { return c.size > int64(len(c.buf)) }
