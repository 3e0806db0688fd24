package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/grpctest"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// grpcEnv is a porthole server with its HTTPS listener (a test CA's
// certificate), a client tunnelling to it over wss://, and a gRPC app
// behind the tunnel.
type grpcEnv struct {
	srv  *server.Server
	ca   *tunneltest.CA
	app  *grpctest.Server
	cl   *tunneltest.Client
	host string // the tunnel's public hostname
	// dials counts the TCP connections the gRPC clients made to the
	// public listener.
	dials atomic.Int64
}

// grpcUpstream is how the app is reached: "h2c" (cleartext app) or
// "http2" (TLS app, ALPN h2), or "auto" (TLS app).
func startGRPCEnv(t testing.TB, upstream string, mods ...func(*server.Config)) *grpcEnv {
	t.Helper()
	e := &grpcEnv{ca: tunneltest.NewCA(t)}
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.HTTPSAddr, cfg.TunnelAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NoAuth = true
	cfg.TLSCert, cfg.TLSKey = "unused.pem", "unused.key" // the certificate comes in Deps.TLS
	cfg.HTTP.ShutdownTimeout = config.Duration(5 * time.Second)
	for _, m := range mods {
		m(&cfg)
	}
	log, _ := tunneltest.NewLogger(t, "server")
	srv, err := server.New(cfg, server.Deps{Logger: log, TLS: e.ca.ServerTLS(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(func() { srv.Shutdown() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	target := "http://" + ln.Addr().String()
	if upstream != "h2c" {
		opts = append(opts, grpc.Creds(credentials.NewTLS(e.ca.ServerTLS())))
		target = "https://" + ln.Addr().String()
	}
	e.app = grpctest.Serve(ln, opts...)
	t.Cleanup(e.app.Stop)

	ccfg := tunneltest.ClientConfig("wss://" + srv.TunnelAddr().String())
	spec := tunneltest.HTTP("grpc", target)
	spec.Config.UpstreamProtocol = upstream
	// The app's certificate is the test CA's, which the client's
	// system roots do not hold.
	spec.Config.InsecureSkipVerify = upstream != "h2c"
	e.cl = tunneltest.StartClientDeps(t, ccfg, client.Deps{TLS: e.ca.ClientTLS()}, spec)
	u, err := url.Parse(e.cl.WaitURL(t, "grpc"))
	if err != nil {
		t.Fatal(err)
	}
	e.host = u.Hostname()
	if u.Scheme != "https" {
		t.Fatalf("tunnel URL %s, want https", u)
	}
	return e
}

// dial returns a gRPC client of the tunnel's public https:// URL: one
// HTTP/2 connection to the HTTPS listener, TLS verified against the
// test CA.
func (e *grpcEnv) dial(t testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	addr := e.srv.HTTPSAddr().String()
	tc := e.ca.ClientTLS()
	tc.ServerName = e.host
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			e.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}),
	}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+e.host, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// clientTLS is a TLS configuration for plain HTTPS visitors.
func (e *grpcEnv) clientTLS() *tls.Config {
	tc := e.ca.ClientTLS()
	tc.ServerName = e.host
	return tc
}
