package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/porthole/porthole/internal/grpctest"
	"github.com/porthole/porthole/internal/server"
)

// TestGRPCThroughTunnel drives a real gRPC client through the server's
// HTTPS listener (HTTP/2 by ALPN), the tunnel (HTTP/1.1 on a stream) and
// the client to a real gRPC app, reached by cleartext HTTP/2 (h2c) or by
// HTTP/2 over TLS (http2, auto): every kind of call, status codes,
// metadata in headers and trailers, deadlines and cancellation.
func TestGRPCThroughTunnel(t *testing.T) {
	for _, upstream := range []string{"h2c", "http2", "auto"} {
		t.Run(upstream, func(t *testing.T) {
			e := startGRPCEnv(t, upstream)
			cc := e.dial(t)
			t.Run("health", func(t *testing.T) { testGRPCHealth(t, cc) })
			t.Run("unary", func(t *testing.T) { testGRPCUnary(t, cc) })
			t.Run("status", func(t *testing.T) { testGRPCStatus(t, cc) })
			t.Run("server-streaming", func(t *testing.T) { testGRPCDownload(t, cc) })
			t.Run("client-streaming", func(t *testing.T) { testGRPCUpload(t, cc, 64, 64<<10) })
			t.Run("bidirectional", func(t *testing.T) { testGRPCBidi(t, cc) })
			t.Run("deadline", func(t *testing.T) { testGRPCDeadline(t, e, cc) })
			t.Run("cancel", func(t *testing.T) { testGRPCCancel(t, e, cc) })
			if n := e.dials.Load(); n != 1 {
				t.Errorf("the gRPC client made %d connections to the public listener, want 1", n)
			}
		})
	}
}

func testGRPCHealth(t *testing.T, cc *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: grpctest.Service})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v, want SERVING", resp, err)
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("health check of an unknown service: %v, want NotFound", err)
	}
}

func testGRPCUnary(t *testing.T, cc *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bin := string([]byte{0, 1, 2, 0xff, 'x'})
	ctx = metadata.AppendToOutgoingContext(ctx, "x-echo", "hello from the visitor", "x-echo-bin", bin)
	in := grpctest.Payload(1, 100<<10)
	var out []byte
	var header, trailer metadata.MD
	if err := cc.Invoke(ctx, grpctest.UnaryMethod, &in, &out, grpctest.CallRaw(), grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("unary call: %v", err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("unary echo: %d bytes back, want the %d sent", len(out), len(in))
	}
	if got := header.Get("x-echo"); len(got) != 1 || got[0] != "hello from the visitor" {
		t.Errorf("header x-echo = %q", got)
	}
	if got := header.Get("x-echo-bin"); len(got) != 1 || got[0] != bin {
		t.Errorf("binary header x-echo-bin = %q, want %q", got, bin)
	}
	if got := header.Get("content-type"); len(got) != 1 || got[0] != "application/grpc+raw" {
		t.Errorf("response content-type = %q, want application/grpc+raw", got)
	}
	sum := sha256.Sum256(in)
	if got := trailer.Get("x-sha256"); len(got) != 1 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("trailer x-sha256 = %q", got)
	}
	if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "from-app" {
		t.Errorf("trailer x-trailer = %q", got)
	}
}

// testGRPCStatus: an error status, its message and the trailers sent with
// it reach the caller. grpc-go sends these as a trailers-only response
// (one HEADERS frame with END_STREAM) when no message came first.
func testGRPCStatus(t *testing.T, cc *grpc.ClientConn) {
	for _, c := range []codes.Code{codes.NotFound, codes.PermissionDenied, codes.ResourceExhausted, codes.Unimplemented, codes.Internal} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msg := fmt.Sprintf("app says %s: 100%% sure", c)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-code", fmt.Sprint(int(c)), "x-message", msg)
		in := []byte("x")
		var out []byte
		var trailer metadata.MD
		err := cc.Invoke(ctx, grpctest.UnaryMethod, &in, &out, grpctest.CallRaw(), grpc.Trailer(&trailer))
		cancel()
		st, _ := status.FromError(err)
		if st.Code() != c || st.Message() != msg+" (ünïcode)" {
			t.Errorf("asked for %s: got %v", c, err)
		}
		if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "from-app" {
			t.Errorf("%s: trailer x-trailer = %q", c, got)
		}
	}
	// A method the app does not have: its own Unimplemented.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, out := []byte("x"), []byte(nil)
	err := cc.Invoke(ctx, "/"+grpctest.Service+"/Missing", &in, &out, grpctest.CallRaw())
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v, want Unimplemented", err)
	}
}

func testGRPCDownload(t *testing.T, cc *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, grpctest.DownloadDesc, grpctest.DownloadMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	req := []byte("200 65536")
	if err := st.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	h := sha256.New()
	n := 0
	for {
		var m []byte
		err := st.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d messages: %v", n, err)
		}
		if !bytes.Equal(m, grpctest.Payload(n, 65536)) {
			t.Fatalf("message %d differs", n)
		}
		h.Write(m)
		n++
	}
	if n != 200 {
		t.Fatalf("%d messages, want 200", n)
	}
	if got := st.Trailer().Get("x-sha256"); len(got) != 1 || got[0] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("trailer x-sha256 = %q, want the SHA-256 of what arrived", got)
	}
}

// testGRPCUpload streams count messages of size bytes and checks the
// app's SHA-256 of them.
func testGRPCUpload(t *testing.T, cc *grpc.ClientConn, count, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := cc.NewStream(ctx, grpctest.UploadDesc, grpctest.UploadMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for i := range count {
		m := grpctest.Payload(i, size)
		h.Write(m)
		if err := st.SendMsg(&m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := st.RecvMsg(&out); err != nil {
		t.Fatalf("upload answer: %v", err)
	}
	want := fmt.Sprintf("%d %d %s", count, int64(count)*int64(size), hex.EncodeToString(h.Sum(nil)))
	if string(out) != want {
		t.Fatalf("app received %q, want %q", out, want)
	}
}

// testGRPCBidi: each message is echoed before the next is sent, so the
// request and the response stream at once (full duplex on every hop);
// headers come before the first message, trailers and status at the end.
func testGRPCBidi(t *testing.T, cc *grpc.ClientConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-echo", "bidi", "x-code", fmt.Sprint(int(codes.AlreadyExists)))
	st, err := cc.NewStream(ctx, grpctest.EchoDesc, grpctest.EchoMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	// The app sends its headers before any message; they arrive while
	// the request is still open.
	hdr, err := st.Header()
	if err != nil || len(hdr.Get("x-echo")) != 1 || hdr.Get("x-echo")[0] != "bidi" {
		t.Fatalf("headers before the first message: %v %v", hdr, err)
	}
	h := sha256.New()
	for i := range 100 {
		m := grpctest.Payload(i, 1000+i)
		h.Write(m)
		if err := st.SendMsg(&m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		var back []byte
		if err := st.RecvMsg(&back); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if !bytes.Equal(back, m) {
			t.Fatalf("echo %d differs", i)
		}
	}
	st.CloseSend()
	var m []byte
	err = st.RecvMsg(&m)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("end of stream: %v, want AlreadyExists", err)
	}
	if got := st.Trailer().Get("x-sha256"); len(got) != 1 || got[0] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("trailer x-sha256 = %q", got)
	}
}

// testGRPCDeadline: the caller's deadline travels as grpc-timeout, and
// the call ends in DeadlineExceeded; the app's context ends too.
func testGRPCDeadline(t *testing.T, e *grpcEnv, cc *grpc.ClientConn) {
	drainHeld(e)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	in, out := []byte("hold"), []byte(nil)
	err := cc.Invoke(ctx, grpctest.HoldMethod, &in, &out, grpctest.CallRaw())
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("held call past its deadline: %v, want DeadlineExceeded", err)
	}
	select {
	case err := <-e.app.Held:
		if err == nil {
			t.Fatal("the app's context did not end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app's context did not end within 10s of the deadline")
	}
}

// testGRPCCancel: a visitor that cancels (RST_STREAM) cancels the app's
// context, for a unary call waiting on the app and for a bidirectional
// stream in the middle of its request.
func testGRPCCancel(t *testing.T, e *grpcEnv, cc *grpc.ClientConn) {
	drainHeld(e)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		in, out := []byte("hold"), []byte(nil)
		errc <- cc.Invoke(ctx, grpctest.HoldMethod, &in, &out, grpctest.CallRaw())
	}()
	waitFor(t, "the held call to reach the app", func() bool { return e.app.Active() == 1 })
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	select {
	case err := <-e.app.Held:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the app's context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the visitor's cancellation did not reach the app within 10s")
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	st, err := cc.NewStream(ctx, grpctest.EchoDesc, grpctest.EchoMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	m := []byte("ping")
	var back []byte
	if err := st.SendMsg(&m); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(&back); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-e.app.Held:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the app's stream context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling a bidirectional stream did not reach the app within 10s")
	}
}

func drainHeld(e *grpcEnv) {
	for {
		select {
		case <-e.app.Held:
		default:
			return
		}
	}
}

// TestGRPCThousandStreams opens 1,000 concurrent calls on one visitor
// connection. With the defaults the server allows 100 streams per
// HTTP/2 connection (http.max_concurrent_streams, a hardening limit):
// the gRPC client queues the rest, the app never sees more than 100 at
// once, and all 1,000 complete. With the limit (and the per-address and
// per-session caps that count those streams) raised to fit, the app sees
// all 1,000 at once.
func TestGRPCThousandStreams(t *testing.T) {
	const calls = 1000
	for _, tc := range []struct {
		name      string
		mod       func(*server.Config)
		atOnce    int64
		connLimit bool
	}{
		{"default-limit", func(*server.Config) {}, 100, true},
		{"raised-limit", func(c *server.Config) {
			c.HTTP.MaxConcurrentStreams = 1000
			c.Limits.VisitorConnectionsPerIP = 2000
			c.Limits.MaxStreamsPerSession = 4000
		}, calls, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startGRPCEnv(t, "h2c", tc.mod)
			cc := e.dial(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, calls)
			for i := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					in := []byte(fmt.Sprint(i))
					var out []byte
					if err := cc.Invoke(ctx, grpctest.HoldMethod, &in, &out, grpctest.CallRaw()); err != nil {
						errs <- err
						return
					}
					if string(out) != fmt.Sprint(i) {
						errs <- fmt.Errorf("call %d answered %q", i, out)
					}
				}()
			}
			waitFor(t, fmt.Sprintf("%d calls held at the app at once", tc.atOnce), func() bool { return e.app.Active() == tc.atOnce })
			e.app.Release()
			wg.Wait()
			close(errs)
			n := 0
			for err := range errs {
				if n++; n <= 5 {
					t.Errorf("call failed: %v", err)
				}
			}
			if n > 0 {
				t.Fatalf("%d of %d calls failed", n, calls)
			}
			if m := e.app.MaxActive(); m != tc.atOnce {
				t.Fatalf("the app saw up to %d calls at once, want %d", m, tc.atOnce)
			}
			if d := e.dials.Load(); d != 1 {
				t.Fatalf("%d visitor connections, want 1", d)
			}
		})
	}
}

// TestGRPCLargeStream streams 256 MiB to the app in 1 MiB messages and
// compares the SHA-256 the app computed; then the same through a
// bidirectional echo of 32 MiB, both directions at once. Under the race
// detector the upload is 64 MiB (the instrumented copies, not the
// tunnel, would set the pace); e2e.TestGRPCBinary moves 256 MiB each way
// through the real binary.
func TestGRPCLargeStream(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB through the tunnel")
	}
	e := startGRPCEnv(t, "h2c")
	cc := e.dial(t)
	mib := 256
	if limRace {
		mib = 64
	}
	testGRPCUpload(t, cc, mib, 1<<20)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := cc.NewStream(ctx, grpctest.EchoDesc, grpctest.EchoMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	const count, size = 128, 256 << 10
	sent := make(chan string, 1)
	go func() {
		h := sha256.New()
		for i := range count {
			m := grpctest.Payload(i, size)
			h.Write(m)
			if st.SendMsg(&m) != nil {
				break
			}
		}
		st.CloseSend()
		sent <- hex.EncodeToString(h.Sum(nil))
	}()
	h := sha256.New()
	got := 0
	for {
		var m []byte
		err := st.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("echo after %d bytes: %v", got, err)
		}
		h.Write(m)
		got += len(m)
	}
	want := <-sent
	if got != count*size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("echo: %d bytes back, SHA-256 match %v; want %d", got, hex.EncodeToString(h.Sum(nil)) == want, count*size)
	}
	if tr := st.Trailer().Get("x-sha256"); len(tr) != 1 || tr[0] != want {
		t.Fatalf("the app's SHA-256 %q, want %s", tr, want)
	}
}
