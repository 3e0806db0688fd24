package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/porthole/porthole/internal/grpctest"
)

// TestGRPCBinary drives gRPC through the real binary: `porthole server`
// with a certificate from a test CA and --h2c, `porthole http
// http://127.0.0.1:PORT --upstream-protocol h2c` in front of a real gRPC
// app, and a gRPC client at the https:// URL (HTTP/2 by ALPN) and at the
// http:// one (cleartext HTTP/2): health, metadata and trailers, status
// codes, deadline, cancellation, and a bidirectional stream that moves
// 256 MiB each way at once with matching SHA-256. The same tunnel from a
// config file's upstream_protocol key serves too.
func TestGRPCBinary(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "porthole test CA")
	leaf := issueTLSLeaf(t, ca, "*.tun.test", "tun.test", "127.0.0.1")
	certFile := tlsWriteFile(t, filepath.Join(dir, "cert.pem"), leaf.CertPEM)
	keyFile := tlsWriteFile(t, filepath.Join(dir, "key.pem"), leaf.KeyPEM)
	caFile := tlsWriteFile(t, filepath.Join(dir, "ca.pem"), ca.PEM)
	srv := startTLSServer(t, "--https-addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--h2c")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := grpctest.Serve(ln)
	t.Cleanup(app.Stop)

	cl := startPorthole(t, interrupted, "http", "http://"+app.Addr, "--upstream-protocol", "h2c",
		"--server", "wss://"+srv.tunnelAddr, "--ca-file", caFile, "--subdomain", "grpc", "--inspect-addr", "off")
	u, err := url.Parse(cl.forwarding(t))
	if err != nil || u.Scheme != "https" || u.Hostname() != "grpc.tun.test" {
		t.Fatalf("Forwarding URL %v (%v), want https://grpc.tun.test:PORT", u, err)
	}

	tlsConn := grpcDial(t, srv.httpsAddr, "grpc.tun.test", credentials.NewTLS(&tls.Config{RootCAs: tlsCertPool(ca.PEM), ServerName: "grpc.tun.test"}))
	h2cConn := grpcDial(t, srv.httpAddr, "grpc.tun.test", insecure.NewCredentials())

	for name, cc := range map[string]*grpc.ClientConn{"tls": tlsConn, "h2c": h2cConn} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: grpctest.Service})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s: health: %v %v", name, resp, err)
		}
		in, out := []byte("ping "+name), []byte(nil)
		var header, trailer metadata.MD
		err = cc.Invoke(metadata.AppendToOutgoingContext(ctx, "x-echo", name), grpctest.UnaryMethod, &in, &out,
			grpctest.CallRaw(), grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil || !bytes.Equal(in, out) || strings.Join(header.Get("x-echo"), "") != name || strings.Join(trailer.Get("x-trailer"), "") != "from-app" {
			t.Fatalf("%s: unary: %q %v, header %v, trailer %v", name, out, err, header, trailer)
		}
		err = cc.Invoke(metadata.AppendToOutgoingContext(ctx, "x-code", fmt.Sprint(int(codes.FailedPrecondition))), grpctest.UnaryMethod, &in, &out, grpctest.CallRaw())
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s: asked for FailedPrecondition, got %v", name, err)
		}
		cancel()
	}

	// Deadline: DeadlineExceeded for the caller, the app's context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	in, out := []byte("hold"), []byte(nil)
	err = tlsConn.Invoke(ctx, grpctest.HoldMethod, &in, &out, grpctest.CallRaw())
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("past its deadline: %v, want DeadlineExceeded", err)
	}
	if err := heldErr(app); err == nil {
		t.Fatal("the app's context did not end at the deadline")
	}
	// Cancellation: the visitor's RST_STREAM cancels the app's context.
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- tlsConn.Invoke(ctx, grpctest.HoldMethod, &in, &out, grpctest.CallRaw()) }()
	for deadline := time.Now().Add(10 * time.Second); app.Active() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	if err := heldErr(app); !errors.Is(err, context.Canceled) {
		t.Fatalf("the app's context ended with %v, want context.Canceled", err)
	}

	// 256 MiB each way, both at once.
	const count, size = 1024, 256 << 10
	sent, got, appSum := grpcEcho(t, tlsConn, count, size)
	if sent != got || appSum != sent {
		t.Fatalf("256 MiB echo: sent %s, received %s, the app received %s", sent, got, appSum)
	}
	t.Logf("256 MiB each way through the real binary, SHA-256 %s", sent)

	// The same from a config file.
	cfg := tlsWriteFile(t, filepath.Join(dir, "porthole.toml"), []byte(fmt.Sprintf(
		"[tunnels.svc]\nproto = \"http\"\naddr = \"http://%s\"\nsubdomain = \"svc\"\nupstream_protocol = \"h2c\"\n", app.Addr)))
	fromFile := startPorthole(t, interrupted, "start", "--config", cfg, "--server", "wss://"+srv.tunnelAddr, "--ca-file", caFile, "--inspect-addr", "off")
	fromFile.forwarding(t)
	apiConn := grpcDial(t, srv.httpAddr, "svc.tun.test", insecure.NewCredentials())
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in = []byte("from the config file")
	if err := apiConn.Invoke(ctx, grpctest.UnaryMethod, &in, &out, grpctest.CallRaw()); err != nil || string(out) != string(in) {
		t.Fatalf("tunnel from upstream_protocol in a config file: %q %v", out, err)
	}
}

// TestUpstreamProtocolUsage: a wrong --upstream-protocol, or one that
// cannot reach the target's scheme, is a usage error (exit 2) that says
// what is accepted.
func TestUpstreamProtocolUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"http", "3000", "--upstream-protocol", "h3"}, `upstream_protocol "h3": want http1, http2, h2c or auto`},
		{[]string{"http", "3000", "--upstream-protocol", "http2"}, "needs an https:// target"},
		{[]string{"http", "https://localhost:8443", "--upstream-protocol", "h2c"}, "needs an http:// target"},
	} {
		_, stderr, code := runPorthole(t, append(tc.args, "--server", "ws://127.0.0.1:1", "--inspect-addr", "off")...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("porthole %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	stdout, _, code := runPorthole(t, "http", "--help")
	if code != 0 || !strings.Contains(stdout, "--upstream-protocol") || !strings.Contains(stdout, "h2c") {
		t.Errorf("porthole http --help does not describe --upstream-protocol:\n%s", stdout)
	}
	stdout, _, _ = runPorthole(t, "server", "--help")
	if !strings.Contains(stdout, "--h2c") {
		t.Errorf("porthole server --help does not describe --h2c:\n%s", stdout)
	}
}

// grpcDial connects to addr for the tunnel host.
func grpcDial(t *testing.T, addr, host string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+host, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func heldErr(app *grpctest.Server) error {
	select {
	case err := <-app.Held:
		return err
	case <-time.After(10 * time.Second):
		return nil
	}
}

// grpcEcho sends count messages of size bytes through the Echo method
// while reading them back, and returns the SHA-256 of what was sent, of
// what came back, and the app's of what it received (its trailer).
func grpcEcho(t *testing.T, cc *grpc.ClientConn, count, size int) (sent, got, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := cc.NewStream(ctx, grpctest.EchoDesc, grpctest.EchoMethod, grpctest.CallRaw())
	if err != nil {
		t.Fatal(err)
	}
	sentc := make(chan string, 1)
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
		sentc <- hex.EncodeToString(h.Sum(nil))
	}()
	h := sha256.New()
	n := 0
	for {
		var m []byte
		err := st.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("echo after %d bytes: %v", n, err)
		}
		h.Write(m)
		n += len(m)
	}
	if n != count*size {
		t.Fatalf("echo: %d bytes back, want %d", n, count*size)
	}
	return <-sentc, hex.EncodeToString(h.Sum(nil)), strings.Join(st.Trailer().Get("x-sha256"), "")
}
