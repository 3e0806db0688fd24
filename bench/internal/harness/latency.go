package harness

import (
	"fmt"
	"slices"
	"time"
)

// LatencyStats summarises one condition's samples.
type LatencyStats struct {
	N      int     `json:"n"`
	Errors int     `json:"errors"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	Maxms  float64 `json:"max_ms"`
}

func (l LatencyStats) String() string {
	return fmt.Sprintf("n=%d errors=%d p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms", l.N, l.Errors, l.P50ms, l.P90ms, l.P99ms, l.Maxms)
}

// Summarise sorts d and returns its quantiles.
func Summarise(d []time.Duration, errors int) LatencyStats {
	slices.Sort(d)
	ms := func(q float64) float64 {
		if len(d) == 0 {
			return 0
		}
		i := min(len(d)-1, int(q*float64(len(d))))
		return float64(d[i]) / float64(time.Millisecond)
	}
	return LatencyStats{N: len(d), Errors: errors, P50ms: ms(0.50), P90ms: ms(0.90), P99ms: ms(0.99), Maxms: ms(1)}
}
