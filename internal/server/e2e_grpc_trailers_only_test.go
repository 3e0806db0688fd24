package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/porthole/porthole/internal/grpctest"
)

// TestGRPCTrailersOnlyRepeated: a status-only answer (gRPC's
// Trailers-Only response: one HEADERS frame that ends the stream) stays
// one frame on each of 300 fresh visitor connections. It once came apart
// about one time in 300, when ReverseProxy flushed the header of what it
// took for a streamed response on a timer.
func TestGRPCTrailersOnlyRepeated(t *testing.T) {
	e := startGRPCEnv(t, "h2c")
	bad := 0
	for i := range 300 {
		cc := e.dial(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		in, out := []byte("x"), []byte(nil)
		if err := cc.Invoke(ctx, grpctest.UnaryMethod, &in, &out, grpctest.CallRaw()); err != nil {
			t.Fatal(err)
		}
		err := cc.Invoke(metadata.AppendToOutgoingContext(ctx, "x-code", "9"), grpctest.UnaryMethod, &in, &out, grpctest.CallRaw())
		if status.Code(err) != codes.FailedPrecondition {
			bad++
			t.Errorf("connection %d: %v, want FailedPrecondition", i, err)
		}
		cancel()
		cc.Close()
	}
	if bad > 0 {
		t.Fatalf("%d of 300 status-only answers did not arrive", bad)
	}
}
