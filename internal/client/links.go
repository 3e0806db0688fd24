package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porthole/porthole/internal/protocol"
)

// link is one of the client's simultaneous sessions (--links N): each
// keeps a session to one of the servers, binds every tunnel there, and
// reconnects by itself. Link i starts at the i-th server and prefers a
// server that no other link uses.
type link struct {
	i      int
	server atomic.Value // string: the server of its serving session, "" when none
	state  atomic.Value // string: a State* constant

	mu sync.Mutex
	// draining is the link's earlier session, told to go away and still
	// finishing its requests; nil when there is none. A link has at most
	// one, so a server that repeats go_away cannot make it open sessions
	// without bound.
	draining *running
	// lastMove is when the link last moved at once on a go_away.
	lastMove time.Time
}

// LinkStatus is one link in the status API.
type LinkStatus struct {
	Link     int    `json:"link"`
	Server   string `json:"server"`
	State    string `json:"state"`
	Draining string `json:"draining,omitempty"` // server of a session that is going away
}

// running is a session being served on its own goroutine.
type running struct {
	url  string
	done chan error // the session's end, once
	// away is closed on the server's first go_away; deadline is then how
	// long the server said it keeps the session.
	away     chan struct{}
	awayOnce sync.Once
	deadline time.Duration
	// online is closed when every tunnel is bound on this session.
	online chan struct{}
	// retire, set once the session is up, unbinds its tunnels and hangs
	// up when its streams are done.
	retire atomic.Pointer[func()]
	// moved is set when the link left this session for another.
	moved atomic.Bool
	close func() // hangs up at once
}

// minMoveInterval is the least time between two moves of one link on a
// go_away: servers that answer every session with go_away make the link
// reconnect with backoff instead of at once.
const minMoveInterval = 5 * time.Second

// maxDrain caps how long a session told to go away is kept, whatever the
// server's go_away says.
const maxDrain = 2 * time.Minute

func (r *running) goAway(m *protocol.GoAway) bool {
	first := false
	r.awayOnce.Do(func() {
		first = true
		r.deadline = min(max(time.Duration(m.DeadlineMillis)*time.Millisecond, time.Second), maxDrain)
		close(r.away)
	})
	return first
}

// Run connects and serves until ctx is cancelled (returns nil after
// releasing the tunnels) or a final error happens (returns a *FinalError).
// With several links, a final error on one stops them all.
func (c *Client) Run(ctx context.Context) error {
	defer c.close()
	if len(c.links) == 1 {
		return c.runLink(ctx, c.links[0])
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(c.links))
	for _, l := range c.links {
		go func() { errc <- c.runLink(ctx, l) }()
	}
	var first error
	for range c.links {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	c.state.Store(StateStopped)
	return first
}

// runLink keeps link l connected: on a lost session it reconnects with
// backoff; on a go_away it opens a session to another server at once and
// lets the old one drain in the background.
func (c *Client) runLink(ctx context.Context, l *link) error {
	if l.i > 0 && c.needsNames() {
		// Names the server chooses are chosen once, by the first link to
		// bind; the others ask for the same ones.
		select {
		case <-c.firstBound:
		case <-ctx.Done():
			return nil
		}
	}
	attempt := 0
	for {
		sessionStart := time.Now()
		r, err := c.connect(ctx, l, c.serverOrder(l))
		if err == nil {
			var moved bool
			if moved, err = c.watch(ctx, l, r); moved {
				// Serve on elsewhere now; the old session finishes its
				// requests meanwhile.
				continue
			}
		}
		if ctx.Err() != nil {
			c.setLinkState(l, StateStopped)
			return nil
		}
		var fe *FinalError
		if errors.As(err, &fe) {
			c.setLinkState(l, StateStopped)
			return err
		}
		if err != nil {
			c.lastErr.Store(err.Error())
		}
		if time.Since(sessionStart) >= c.cfg.Reconnect.ResetAfter.D() {
			attempt = 0
		}
		c.setLinkState(l, StateReconnecting)
		delay := backoffDelay(c.cfg.Reconnect, attempt)
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.RetryAfterMillis > 0 {
			// The server asked for at least this long (a limit was hit).
			delay = max(delay, time.Duration(perr.RetryAfterMillis)*time.Millisecond)
		}
		attempt++
		c.nextRetry.Store(time.Now().Add(delay).UnixNano())
		c.attempt.Store(int64(attempt))
		c.deps.OnEvent(Event{Kind: EventRetrying, Err: err, RetryIn: delay, Attempt: attempt})
		c.log.Info("reconnecting", "link", l.i, "in", delay.Round(time.Millisecond).String(), "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			c.setLinkState(l, StateStopped)
			return nil
		case <-time.After(delay):
		}
	}
}

// MaxLinks is the most links a client keeps; servers refuse a higher
// link number.
const MaxLinks = 16

// rebalanceEvery is how often a link that shares its server with another
// link tries the servers no link uses, e.g. one that came back after a
// restart.
const rebalanceEvery = 2 * time.Second

// watch waits for l's session r to end. It reports moved when r was told
// to go away and l opened its next session elsewhere (the caller connects
// at once). A link on a server another link uses moves to a free server
// as soon as one accepts, letting its old session drain.
func (c *Client) watch(ctx context.Context, l *link, r *running) (moved bool, err error) {
	var tick <-chan time.Time
	if len(c.links) > 1 {
		t := time.NewTicker(rebalanceEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-r.done:
			return false, err
		case <-r.away:
			if c.startDrain(l, r) {
				return true, nil
			}
			return false, <-r.done
		case <-tick:
			free := c.freeServers(l, r.url)
			if len(free) == 0 || !c.idleLink(l) {
				continue
			}
			nr, err := c.connect(ctx, l, free)
			if err != nil {
				continue
			}
			c.log.Info("moving to a server no other link uses", "link", l.i, "from", r.url, "to", nr.url)
			c.retire(l, r, nr)
			r = nr
		}
	}
}

// idleLink reports whether l has no session draining.
func (c *Client) idleLink(l *link) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.draining == nil
}

// freeServers lists, when another link uses cur too, the servers no link
// uses; nil when l's server is its own.
func (c *Client) freeServers(l *link, cur string) []string {
	used := make(map[string]bool)
	shared := false
	for _, o := range c.links {
		if o == l {
			continue
		}
		s, _ := o.server.Load().(string)
		used[s] = true
		shared = shared || s == cur
	}
	if !shared {
		return nil
	}
	var out []string
	for _, s := range c.serverOrder(l) {
		if !used[s] && s != cur {
			out = append(out, s)
		}
	}
	return out
}

// retire lets r drain once nr serves: waits for nr's binds, then unbinds
// r's tunnels (visitors go to the other links) and hangs up when r's
// streams are done.
func (c *Client) retire(l *link, r, nr *running) {
	l.mu.Lock()
	l.draining = r
	r.moved.Store(true)
	l.mu.Unlock()
	go func() {
		select {
		case <-nr.online:
		case <-nr.done:
			// nr is gone already: the link's watch handles that; r
			// keeps serving until its deadline.
		case <-time.After(maxDrain):
		}
		if f := r.retire.Load(); f != nil {
			(*f)()
		}
		select {
		case <-r.done:
		case <-time.After(maxDrain):
			r.close()
			<-r.done
		}
		l.mu.Lock()
		l.draining = nil
		l.mu.Unlock()
	}()
}

// startDrain makes r, told to go away, l's draining session, when there
// is somewhere else to go: another server, and no earlier session of l
// still draining. It reports whether it did; if not, the caller waits for
// r to end and reconnects as after any shutdown.
func (c *Client) startDrain(l *link, r *running) bool {
	l.mu.Lock()
	if l.draining != nil || len(c.otherServers(r.url)) == 0 || time.Since(l.lastMove) < minMoveInterval {
		l.mu.Unlock()
		c.log.Info("server is going away; staying until it closes the session", "link", l.i, "server", r.url)
		return false
	}
	l.draining = r
	l.lastMove = time.Now()
	r.moved.Store(true)
	l.mu.Unlock()
	c.log.Info("server is going away; moving to another server", "link", l.i, "server", r.url, "deadline", r.deadline.String())
	go func() {
		t := time.NewTimer(r.deadline)
		defer t.Stop()
		select {
		case <-r.done:
		case <-t.C:
			r.close()
			<-r.done
		}
		l.mu.Lock()
		l.draining = nil
		l.mu.Unlock()
		c.log.Info("old session drained", "link", l.i, "server", r.url)
	}()
	return true
}

func (c *Client) otherServers(url string) []string {
	var out []string
	for _, s := range c.cfg.Servers {
		if s != url {
			out = append(out, s)
		}
	}
	return out
}

// serverOrder is the order in which l tries the servers: from its own
// starting point, servers no other link uses first, never the server its
// draining session is on (a new session there would take its own names
// over from the draining one).
func (c *Client) serverOrder(l *link) []string {
	l.mu.Lock()
	avoid := ""
	if l.draining != nil {
		avoid = l.draining.url
	}
	l.mu.Unlock()
	used := make(map[string]bool)
	for _, o := range c.links {
		if o != l {
			if s, _ := o.server.Load().(string); s != "" {
				used[s] = true
			}
		}
	}
	n := len(c.cfg.Servers)
	var free, busy []string
	for k := range n {
		s := c.cfg.Servers[(l.i+k)%n]
		switch {
		case s == avoid:
		case used[s]:
			busy = append(busy, s)
		default:
			free = append(free, s)
		}
	}
	return append(free, busy...)
}

// connect tries l's servers in order and starts serving on the first that
// accepts; the session runs until r.done.
func (c *Client) connect(ctx context.Context, l *link, servers []string) (*running, error) {
	var errs []error
	for _, url := range servers {
		mux, err := c.dial(ctx, url)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var fe *FinalError
			if errors.As(err, &fe) {
				return nil, err
			}
			c.log.Info("cannot reach server", "server", url, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", url, err))
			continue
		}
		if c.connected.Swap(true) {
			c.reconnects.Add(1)
		}
		r := &running{url: url, done: make(chan error, 1), away: make(chan struct{}), online: make(chan struct{}), close: func() { mux.Close() }}
		go func() {
			err := c.serveSession(ctx, l, r, mux)
			if l.server.CompareAndSwap(url, "") {
				c.refreshState()
			}
			r.done <- err
		}()
		return r, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no server to connect to")
	}
	return nil, errors.Join(errs...)
}

// needsNames reports whether a tunnel waits for the server to choose its
// name (no subdomain, hostname or port asked for).
func (c *Client) needsNames() bool {
	for _, t := range c.tunnels {
		if t.cfg.Subdomain == "" && t.cfg.Hostname == "" && t.cfg.RemotePort == 0 {
			return true
		}
	}
	return false
}

func (c *Client) setLinkState(l *link, s string) {
	l.state.Store(s)
	c.refreshState()
}

// refreshState derives the client's state from its links': online while
// any link serves.
func (c *Client) refreshState() {
	st, server := StateStopped, ""
	for _, l := range c.links {
		ls, _ := l.state.Load().(string)
		switch {
		case ls == StateOnline:
			if st != StateOnline {
				st, server = StateOnline, l.server.Load().(string)
			}
		case ls == StateReconnecting && st != StateOnline:
			st = StateReconnecting
		case ls == StateConnecting && st == StateStopped:
			st = StateConnecting
		}
	}
	c.state.Store(st)
	if server != "" {
		c.server.Store(server)
	}
}

func (c *Client) linkStatus() []LinkStatus {
	out := make([]LinkStatus, 0, len(c.links))
	for _, l := range c.links {
		ls := LinkStatus{Link: l.i}
		ls.Server, _ = l.server.Load().(string)
		ls.State, _ = l.state.Load().(string)
		l.mu.Lock()
		if l.draining != nil {
			ls.Draining = l.draining.url
		}
		l.mu.Unlock()
		out = append(out, ls)
	}
	return out
}
