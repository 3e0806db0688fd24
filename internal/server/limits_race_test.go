//go:build race

package server_test

// Under the race detector, moving bytes costs several times the CPU: the
// shaping tests use smaller transfers there, so that the limit, not the
// instrumentation, sets their pace.
func init() { limRace = true }
