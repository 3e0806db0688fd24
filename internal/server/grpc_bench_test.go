package server_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/porthole/porthole/internal/grpctest"
	"github.com/porthole/porthole/internal/server"
)

// BenchmarkGRPCUnary measures unary calls (100-byte request and answer)
// from 16 concurrent callers on one connection, straight to the app and
// through the tunnel (visitor on the server's h2c listener, session over
// wss://, client to the app by h2c), in the same run, and reports calls/s
// and p99 latency of each and their ratios. Everything runs in this
// process on loopback, so the tunnel's CPU competes with the load's.
//
//	go test -run '^$' -bench BenchmarkGRPCUnary -benchtime 20000x ./internal/server
func BenchmarkGRPCUnary(b *testing.B) {
	e := startGRPCEnv(b, "h2c", func(c *server.Config) { c.HTTP.H2C = true })
	direct := grpcBenchConn(b, e.app.Addr, "direct")
	tunnel := grpcBenchConn(b, e.srv.HTTPAddr().String(), e.host)
	grpcBenchRun(b, direct, 200) // warm both paths up
	grpcBenchRun(b, tunnel, 200)
	b.ResetTimer()
	dRate, dP99 := grpcBenchRun(b, direct, b.N)
	tRate, tP99 := grpcBenchRun(b, tunnel, b.N)
	b.StopTimer()
	b.ReportMetric(dRate, "direct-calls/s")
	b.ReportMetric(tRate, "tunnel-calls/s")
	b.ReportMetric(tRate/dRate, "calls/s-ratio")
	b.ReportMetric(float64(dP99.Microseconds()), "direct-p99-µs")
	b.ReportMetric(float64(tP99.Microseconds()), "tunnel-p99-µs")
	b.ReportMetric(float64(tP99)/float64(dP99), "p99-ratio")
}

func grpcBenchConn(b *testing.B, addr, host string) *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///"+host, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return cc
}

// grpcBenchRun makes n calls from 16 callers and returns calls/s and the
// 99th percentile latency.
func grpcBenchRun(b *testing.B, cc *grpc.ClientConn, n int) (float64, time.Duration) {
	const callers = 16
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := grpctest.Payload(w, 100)
			var out []byte
			for i := w; i < n; i += callers {
				t0 := time.Now()
				if err := cc.Invoke(context.Background(), grpctest.UnaryMethod, &in, &out, grpctest.CallRaw()); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	return float64(n) / elapsed.Seconds(), lat[n*99/100]
}
