package server

import "sync/atomic"

// stats are the server's counters. They live beside the state they count and
// are exported by the metrics collector.
type stats struct {
	sessionsTotal   atomic.Int64
	sessionsOpen    atomic.Int64
	tunnelsOpen     atomic.Int64
	requests        [6]atomic.Int64 // by status class: index 0 is "other"
	bytesIn         atomic.Int64    // from visitors towards clients
	bytesOut        atomic.Int64    // from clients towards visitors
	streamsOpen     atomic.Int64
	streamsTotal    atomic.Int64
	handshakeFailed atomic.Int64
	reconnects      atomic.Int64
}

func (st *stats) countRequest(status int) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	st.requests[class].Add(1)
}
