package httpfwd

import (
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
)

// The tunnel hop is HTTP/1.1 on a multiplexer stream, whatever the
// visitor and the local app speak. What HTTP/2 and gRPC need from it:
//
//   - both bodies streaming at once (bidirectional gRPC streams): net/http's
//     HTTP/1 server reads the rest of a request body before it writes the
//     first response byte unless the handler enables full duplex;
//   - trailers, carried in the chunked encoding's trailer section
//     (RFC 9112 section 7.1.2): gRPC's status travels there;
//   - response headers sent as soon as the app sends them: a gRPC client
//     may wait for them (grpc.ClientStream.Header) before the first message.
//     ReverseProxy does it for a response of unknown length (it flushes
//     the header on a timer of zero, then after every write); a response
//     of known length, such as a Trailers-Only gRPC status, must keep its
//     length so that the header block stays whole (KeepTrailers);
//   - TE: trailers and the Content-Type as the visitor sent them, which
//     httputil.ReverseProxy keeps.
//
// Trailers over HTTP/1.1 are bounded by net/http: a chunked trailer block
// must fit the connection's read buffer (4 KiB on the client's HTTP/1
// server for request trailers, http.Transport.ReadBufferSize, 32 KiB, on
// the server for response trailers), else the body ends in an error.

// IsGRPC reports whether h names a gRPC message body (the gRPC over
// HTTP/2 protocol: "application/grpc", alone or with "+FORMAT" or
// parameters).
func IsGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// Duplex readies w for a request whose body may still be arriving while
// the response streams: it enables full duplex on HTTP/1 requests with a
// body (HTTP/2 always is), and returns w.
func Duplex(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// An error means the writer cannot (an HTTP/2 one, which needs
		// nothing); the request is served either way.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	return w
}

// ForwardRequestTrailers makes the outgoing request carry the visitor's
// request trailers. ReverseProxy clones the request before the body has
// been read, so the clone's Trailer holds the announced names without
// their values; they are copied over when the body ends, which is when
// both HTTP/1 and HTTP/2 transports read them, on the goroutine that
// read the body. A request that announces trailers is sent chunked, the
// only HTTP/1.1 framing that carries them.
func ForwardRequestTrailers(pr *httputil.ProxyRequest) {
	if len(pr.In.Trailer) == 0 || pr.Out.Body == nil || pr.Out.Body == http.NoBody {
		return
	}
	pr.Out.ContentLength = -1
	pr.Out.Body = &trailerBody{ReadCloser: pr.Out.Body, in: pr.In, out: pr.Out}
}

type trailerBody struct {
	io.ReadCloser
	in, out *http.Request
	once    sync.Once
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(func() {
			if b.out.Trailer == nil {
				b.out.Trailer = make(http.Header, len(b.in.Trailer))
			}
			for k, v := range b.in.Trailer {
				if len(v) > 0 {
					b.out.Trailer[k] = v
				}
			}
		})
	}
	return n, err
}

// KeepTrailers is a ModifyResponse step for responses from an HTTP/2
// upstream: one that announces trailers, or carries gRPC, loses its
// Content-Length, so that the HTTP/1.1 hop sends it chunked and the
// trailers have a place to go. (gRPC servers do not announce theirs.)
func KeepTrailers(resp *http.Response) error {
	if resp.ProtoMajor != 2 || (len(resp.Trailer) == 0 && !IsGRPC(resp.Header)) {
		return nil
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return nil
	}
	// A gRPC Trailers-Only response (the status in the header block, no
	// body) keeps its length of 0: as a streamed one, ReverseProxy would
	// flush its header on a timer that can fire before the handler
	// returns, splitting the block from the end of the stream, which gRPC
	// clients reject.
	if resp.ContentLength == 0 || resp.Header.Get("Grpc-Status") != "" {
		return nil
	}
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	return nil
}
