package yamux

import (
	"sync"
	"sync/atomic"
)

// Budget bounds the memory that peers can make this side hold for streams
// whose readers are slow, across every session that shares it (and, per
// session, through sessionBudget below).
//
// Two things are bounded:
//
//   - Window credit above the protocol's initial 256 KiB per stream. A
//     stream's window grows towards Config.MaxStreamWindowSize only while
//     it is being read at full speed (auto-tuning), and each byte of
//     growth is taken from the budget's credit (half the limit). When the
//     credit is spent, streams keep the initial window: they move slower
//     but still move.
//   - Bytes buffered and unread, in total. The initial windows are not
//     drawn from credit (the peer may fill them without asking), so a
//     heavy session whose next data frame would take the total past the
//     limit waits before reading it: its data is not dropped, it waits,
//     and the memory stays bounded. A frame into an empty budget is always
//     admitted, so a single frame larger than the limit cannot wedge it.
//
// Upstream yamux has neither: every stream's window is the maximum at
// once, so N stalled readers pin N times the maximum window.
type Budget struct {
	limit    int64
	credit   atomic.Int64 // window credit granted above the initial windows
	buffered atomic.Int64 // bytes received and unread

	// OnWait, when set before use, is called each time a session starts
	// to wait for room.
	OnWait func()

	waiters atomic.Int32
	mu      sync.Mutex
	room    chan struct{} // closed when bytes are released and someone waits
}

// NewBudget returns a budget of limit bytes; limit <= 0 means none (nil).
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		return nil
	}
	return &Budget{limit: limit, room: make(chan struct{})}
}

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Buffered returns the bytes received and not yet read.
func (b *Budget) Buffered() int64 {
	if b == nil {
		return 0
	}
	return b.buffered.Load()
}

// Credit returns the window credit granted above the initial windows.
func (b *Budget) Credit() int64 {
	if b == nil {
		return 0
	}
	return b.credit.Load()
}

// takeCredit grants up to want bytes of window credit.
func (b *Budget) takeCredit(want uint32) uint32 {
	if b == nil {
		return want
	}
	max := b.limit / 2
	for {
		cur := b.credit.Load()
		got := min(int64(want), max-cur)
		if got <= 0 {
			return 0
		}
		if b.credit.CompareAndSwap(cur, cur+got) {
			return uint32(got)
		}
	}
}

func (b *Budget) giveCredit(n uint32) {
	if b != nil && n > 0 {
		b.credit.Add(-int64(n))
	}
}

// waitRoom blocks until n more bytes fit (or nothing is buffered), or
// until done is closed; it reports whether they fit.
func (b *Budget) waitRoom(n int64, done <-chan struct{}) bool {
	for {
		cur := b.buffered.Load()
		if cur+n <= b.limit || cur <= 0 {
			return true
		}
		b.mu.Lock()
		// Counted as waiting before the re-check: a release that comes
		// after the re-check then sees the waiter and wakes it.
		b.waiters.Add(1)
		if cur := b.buffered.Load(); cur+n <= b.limit || cur <= 0 {
			b.waiters.Add(-1)
			b.mu.Unlock()
			return true
		}
		room := b.room
		b.mu.Unlock()
		if b.OnWait != nil {
			b.OnWait()
		}
		select {
		case <-room:
			b.waiters.Add(-1)
		case <-done:
			b.waiters.Add(-1)
			return false
		}
	}
}

func (b *Budget) add(n int64) { b.buffered.Add(n) }

func (b *Budget) release(n int64) {
	b.buffered.Add(-n)
	if b.waiters.Load() > 0 {
		b.mu.Lock()
		close(b.room)
		b.room = make(chan struct{})
		b.mu.Unlock()
	}
}

// sessionBudget is one session's share of a Budget. It counts the
// session's buffered bytes, so that a session that ends gives back what
// its streams still hold (their readers may drain it later; that is not
// counted again), and its window credit, of which one session may take an
// eighth of the budget.
//
// Only a heavy session, one that buffers a sixteenth of the budget or
// more, waits when the budget is full: the tunnel whose visitors stopped
// reading is slowed, and the other sessions go on (each light one can
// take the total past the limit by less than a sixteenth of it).
type sessionBudget struct {
	b        *Budget
	mu       sync.Mutex
	buffered int64
	credit   int64
	closed   bool
}

func (s *sessionBudget) takeCredit(want uint32) uint32 {
	if s.b == nil {
		return want
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want = uint32(min(int64(want), max(s.b.limit/8-s.credit, 0)))
	got := s.b.takeCredit(want)
	s.credit += int64(got)
	return got
}

func (s *sessionBudget) giveCredit(n uint32) {
	if s.b == nil || n == 0 {
		return
	}
	s.mu.Lock()
	s.credit -= int64(n)
	s.mu.Unlock()
	s.b.giveCredit(n)
}

// waitRoom blocks while the budget is full and this session is heavy,
// until done is closed; it reports whether the session may go on.
func (s *sessionBudget) waitRoom(n int64, done <-chan struct{}) bool {
	if s.b == nil {
		return true
	}
	s.mu.Lock()
	heavy := s.buffered >= s.b.limit/16
	s.mu.Unlock()
	if !heavy {
		return true
	}
	return s.b.waitRoom(n, done)
}

func (s *sessionBudget) add(n int) {
	if s.b == nil || n == 0 {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.buffered += int64(n)
		s.b.add(int64(n))
	}
	s.mu.Unlock()
}

func (s *sessionBudget) sub(n int) {
	if s.b == nil || n == 0 {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.buffered -= int64(n)
		s.b.release(int64(n))
	}
	s.mu.Unlock()
}

func (s *sessionBudget) close() {
	if s.b == nil {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.b.release(s.buffered)
		s.buffered = 0
	}
	s.mu.Unlock()
}
