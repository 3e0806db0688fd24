// Package grpctest is a real gRPC server for tests and benchmarks of
// gRPC through a tunnel: a small test service with one method of each
// kind (unary, server-streaming, client-streaming, bidirectional) plus
// the standard health service (google.golang.org/grpc/health).
//
// The test service is declared by hand, a grpc.ServiceDesc whose
// messages are raw bytes under a codec named "raw" (content type
// application/grpc+raw), so that it needs no generated code and adds no
// module beyond google.golang.org/grpc; the health service uses the
// protobuf messages generated inside grpc itself. Behaviour is chosen
// per call by request metadata (x-code, x-echo), and the server reports
// what it saw: the calls in progress and the context errors of held
// calls, which is how tests see a visitor's cancellation reach the app.
package grpctest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Service is the test service's full name.
const Service = "porthole.test.Test"

// Method paths.
const (
	UnaryMethod    = "/" + Service + "/Unary"
	HoldMethod     = "/" + Service + "/Hold"
	DownloadMethod = "/" + Service + "/Download"
	UploadMethod   = "/" + Service + "/Upload"
	EchoMethod     = "/" + Service + "/Echo"
)

// Codec marshals *[]byte messages as they are.
type Codec struct{}

// Name is the content subtype: application/grpc+raw.
func (Codec) Name() string { return "raw" }

// Marshal implements encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: %T is not *[]byte", v)
	}
	return *b, nil
}

// Unmarshal implements encoding.Codec. It copies into a new slice: grpc
// may reuse data, and a message just passed to SendMsg may still be
// queued for writing.
func (Codec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: %T is not *[]byte", v)
	}
	*b = append([]byte(nil), data...)
	return nil
}

func init() { encoding.RegisterCodec(Codec{}) }

// CallRaw is the call option that selects the raw codec.
func CallRaw() grpc.CallOption { return grpc.CallContentSubtype(Codec{}.Name()) }

// Server is the test service and the health service on one listener.
type Server struct {
	GRPC   *grpc.Server
	Health *health.Server
	Addr   string

	active    atomic.Int64
	maxActive atomic.Int64
	// Held receives the context error of each Hold call when it ends.
	Held    chan error
	release chan struct{}
	relOnce sync.Once
	done    chan struct{}
}

// Serve serves on ln until Stop; opts are passed to grpc.NewServer
// (credentials for TLS; none for cleartext h2c).
func Serve(ln net.Listener, opts ...grpc.ServerOption) *Server {
	s := &Server{
		GRPC:    grpc.NewServer(opts...),
		Health:  health.NewServer(),
		Addr:    ln.Addr().String(),
		Held:    make(chan error, 4096),
		release: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.GRPC.RegisterService(&serviceDesc, s)
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	s.Health.SetServingStatus(Service, healthpb.HealthCheckResponse_SERVING)
	go func() {
		defer close(s.done)
		s.GRPC.Serve(ln)
	}()
	return s
}

// Stop ends all calls and the listener.
func (s *Server) Stop() {
	s.Release()
	s.GRPC.Stop()
	<-s.done
}

// Active is the number of Hold calls in progress; MaxActive the most
// seen at once.
func (s *Server) Active() int64    { return s.active.Load() }
func (s *Server) MaxActive() int64 { return s.maxActive.Load() }

// Release lets every Hold call, present and future, return at once.
func (s *Server) Release() { s.relOnce.Do(func() { close(s.release) }) }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Unary", Handler: unaryHandler},
		{MethodName: "Hold", Handler: holdHandler},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Download", Handler: downloadHandler, ServerStreams: true},
		{StreamName: "Upload", Handler: uploadHandler, ClientStreams: true},
		{StreamName: "Echo", Handler: echoHandler, ServerStreams: true, ClientStreams: true},
	},
}

// Stream descriptors for ClientConn.NewStream.
var (
	DownloadDesc = &serviceDesc.Streams[0]
	UploadDesc   = &serviceDesc.Streams[1]
	EchoDesc     = &serviceDesc.Streams[2]
)

// requested returns the status the caller asked for in x-code (and
// x-message), nil when none.
func requested(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("x-code")
	if len(v) == 0 {
		return nil
	}
	c, err := strconv.Atoi(v[0])
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "x-code %q", v[0])
	}
	msg := "requested"
	if m := md.Get("x-message"); len(m) > 0 {
		msg = m[0]
	}
	// Outside ASCII, grpc-message travels percent-encoded.
	msg += " (ünïcode)"
	return status.Error(codes.Code(c), msg)
}

// echoMetadata sends the x-echo values back in a header and sets a
// trailer; trailers reach the caller only if they crossed every hop.
func echoMetadata(ctx context.Context, trailer metadata.MD) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-echo", v[0]))
	}
	if v := md.Get("x-echo-bin"); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs("x-echo-bin", v[0]))
	}
	trailer.Set("x-trailer", "from-app")
	grpc.SetTrailer(ctx, trailer)
}

// Unary echoes its request; x-code makes it fail with that code instead.
func unaryHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	echoMetadata(ctx, metadata.Pairs("x-sha256", sum(in)))
	if err := requested(ctx); err != nil {
		return nil, err
	}
	return &in, nil
}

// Hold waits until Release or until its context ends, which it reports
// on Held.
func holdHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for m := s.maxActive.Load(); n > m && !s.maxActive.CompareAndSwap(m, n); m = s.maxActive.Load() {
	}
	select {
	case <-s.release:
		return &in, nil
	case <-ctx.Done():
		s.Held <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// Download's request is "COUNT SIZE": it sends COUNT messages of SIZE
// bytes, with their SHA-256 in the trailer.
func downloadHandler(srv any, ss grpc.ServerStream) error {
	var in []byte
	if err := ss.RecvMsg(&in); err != nil {
		return err
	}
	var count, size int
	if _, err := fmt.Sscanf(string(in), "%d %d", &count, &size); err != nil || size < 0 || size > 4<<20 {
		return status.Errorf(codes.InvalidArgument, "want \"COUNT SIZE\", got %q", in)
	}
	h := sha256.New()
	for i := range count {
		msg := Payload(i, size)
		h.Write(msg)
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
	}
	ss.SetTrailer(metadata.Pairs("x-sha256", hex.EncodeToString(h.Sum(nil))))
	return nil
}

// Upload hashes what it receives and answers "COUNT BYTES SHA256".
func uploadHandler(srv any, ss grpc.ServerStream) error {
	h := sha256.New()
	var count, n int64
	var in []byte
	for {
		err := ss.RecvMsg(&in)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		count++
		n += int64(len(in))
		h.Write(in)
	}
	out := []byte(fmt.Sprintf("%d %d %s", count, n, hex.EncodeToString(h.Sum(nil))))
	return ss.SendMsg(&out)
}

// Echo sends each message back as it arrives, with the x-echo header,
// and the SHA-256 of everything received in the trailer; x-code ends it
// with that status once the caller half-closes.
func echoHandler(srv any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-echo"); len(v) > 0 {
		if err := ss.SendHeader(metadata.Pairs("x-echo", v[0])); err != nil {
			return err
		}
	}
	h := sha256.New()
	var in []byte
	for {
		err := ss.RecvMsg(&in)
		if err == io.EOF {
			break
		}
		if err != nil {
			s := srv.(*Server)
			if ctx.Err() != nil {
				s.Held <- ctx.Err()
			}
			return err
		}
		h.Write(in)
		if err := ss.SendMsg(&in); err != nil {
			return err
		}
	}
	ss.SetTrailer(metadata.Pairs("x-sha256", hex.EncodeToString(h.Sum(nil)), "x-trailer", "from-app"))
	return requested(ctx)
}

// Payload is the i-th message of size bytes: deterministic, not
// compressible, different for every i.
func Payload(i, size int) []byte {
	b := make([]byte, size+8)
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for j := 0; j < size; j += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[j:], x)
	}
	return b[:size:size]
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
