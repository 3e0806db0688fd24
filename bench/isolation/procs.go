package main

import (
	"github.com/porthole/porthole/bench/internal/procs"
)

// cpuSeconds reads p's user+system CPU time so far, in seconds (0 when
// it cannot be read).
func cpuSeconds(p *procs.Proc) func() float64 {
	return func() float64 {
		d, _ := procs.CPUTime(p.Pid())
		return d.Seconds()
	}
}
