package yamux

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// GuardConfig bounds what the peer's frames can make this side do: how
// often it may send frames that carry no data, and how many streams it may
// open. Upstream yamux answers every ping on a new goroutine and takes any
// number of frames for streams it does not know, so one peer sending
// frames in a loop could grow the goroutine count and the CPU spent
// without limit. A peer past a bound is cut off: the session ends with a
// *FloodError naming the kind of frame. The zero value guards nothing.
type GuardConfig struct {
	// PingsPerSecond and PingBurst bound ping requests.
	PingsPerSecond float64
	PingBurst      int
	// ControlPerSecond and ControlBurst bound frames that move no data
	// and change no stream's state: window updates without flags, empty
	// data frames, ping replies and go-aways.
	ControlPerSecond float64
	ControlBurst     int
	// StrayPerSecond and StrayBurst bound frames for streams this side
	// does not have (closed, reset or never opened). A few are normal:
	// the peer may send before it learns that a stream was reset.
	StrayPerSecond float64
	StrayBurst     int
	// MaxInboundStreams is how many streams opened by the peer may be
	// open at once (0: no limit). More are refused with a reset at once,
	// before any state is kept for them; RefusedPerSecond and
	// RefusedBurst bound such refusals.
	MaxInboundStreams int
	RefusedPerSecond  float64
	RefusedBurst      int
	// OnFlood, when set, is called once when the peer is cut off.
	OnFlood func(kind string)
}

// Kinds of flood, the Kind of a FloodError.
const (
	FloodPing    = "ping"
	FloodControl = "control"
	FloodStray   = "stray"
	FloodOpen    = "open"
)

// FloodError ends a session whose peer sent frames past a GuardConfig
// bound.
type FloodError struct{ Kind string }

func (e *FloodError) Error() string {
	return fmt.Sprintf("yamux: peer cut off: too many %s frames", e.Kind)
}

// guard is one session's state for its GuardConfig.
type guard struct {
	cfg                           *GuardConfig
	ping, control, stray, refused *rate.Limiter
	inbound                       int // streams opened by the peer and open; under streamLock
}

func newGuard(cfg *GuardConfig) *guard {
	g := &guard{cfg: cfg}
	if cfg == nil {
		return g
	}
	lim := func(r float64, b int) *rate.Limiter {
		if r <= 0 {
			return nil
		}
		return rate.NewLimiter(rate.Limit(r), max(b, 1))
	}
	g.ping = lim(cfg.PingsPerSecond, cfg.PingBurst)
	g.control = lim(cfg.ControlPerSecond, cfg.ControlBurst)
	g.stray = lim(cfg.StrayPerSecond, cfg.StrayBurst)
	g.refused = lim(cfg.RefusedPerSecond, cfg.RefusedBurst)
	return g
}

// allow takes one token from l (nil: no bound); past the bound it
// returns the error that ends the session.
func (g *guard) allow(l *rate.Limiter, kind string, now time.Time) error {
	if l == nil || l.AllowN(now, 1) {
		return nil
	}
	if g.cfg.OnFlood != nil {
		g.cfg.OnFlood(kind)
	}
	return &FloodError{Kind: kind}
}

func (g *guard) maxInbound() int {
	if g.cfg == nil {
		return 0
	}
	return g.cfg.MaxInboundStreams
}
