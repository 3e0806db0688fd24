package server_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestControlFloodUnknownTypes: a client floods its control stream with
// frames of a type this server does not know. Each counts against the
// control-message rate, as known ones do, and with the default limits
// the client is told to slow down and cut off.
func TestControlFloodUnknownTypes(t *testing.T) {
	srv := tunneltest.StartServer(t)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown type", frame(0x7f, `{}`)},
		{"unknown type, empty", frame(0xee, ``)},
		{"ping", frame(protocol.TypePing, `{"seq":1}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dialRaw(t, srv)
			s.hello(t)
			flood := bytes.Repeat(tc.frame, 2000)
			s.ctrl.SetDeadline(time.Now().Add(10 * time.Second))
			// The server may hang up before all of it is written.
			go s.ctrl.Write(flood)
			var got *protocol.Error
			for {
				m, err := s.r.Read()
				if err != nil {
					break
				}
				if e, ok := m.(*protocol.Error); ok {
					got = e
				}
			}
			if got == nil || got.Code != protocol.CodeRateLimited || got.RetryAfterMillis < 1000 {
				t.Fatalf("after 2000 %s frames: got %+v, want a rate_limited error before the session ends", tc.name, got)
			}
			if _, err := s.r.Read(); err == nil || errors.Is(err, errTimeout) {
				t.Fatalf("session still open after the flood: %v", err)
			}
		})
	}
	if n, _ := srv.Metric(`porthole_limit_hits_total{kind="control_messages_per_second"}`); n < 3 {
		t.Fatalf("control rate hits = %v, want 3", n)
	}
	stillServes(t, srv)
}

var errTimeout = errors.New("timeout")
