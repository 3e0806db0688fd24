//go:build race

package yamux

// raceEnabled shrinks upstream's bulk transfer tests under the race
// detector, which slows them past any sensible timeout.
const raceEnabled = true
