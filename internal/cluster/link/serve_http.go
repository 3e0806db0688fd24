package link

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/porthole/porthole/internal/httpfwd"
)

// startHTTP starts the server for the HTTP streams, once.
func (s *Server) startHTTP() {
	s.httpOnce.Do(func() {
		s.httpSrv = &http.Server{
			Handler:           http.HandlerFunc(s.serveHTTP),
			ReadHeaderTimeout: preambleTimeout,
			IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
			MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
			ErrorLog:          zap.NewStdLog(s.log.Named("link-http")),
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.httpSrv.Serve(s.httpL)
		}()
	})
}

type forwardedKey struct{}

// Forwarded reports whether r came over the cluster link, and from which
// node (as it named itself). Such a request is served where it arrived:
// a node never forwards it again (ForwardHTTP refuses to).
func Forwarded(r *http.Request) (from string, ok bool) {
	from, ok = r.Context().Value(forwardedKey{}).(string)
	return from, ok
}

// ErrForwardedTwice is ForwardHTTP's error for a request that already
// came over the link: a request crosses at most one hop.
var ErrForwardedTwice = errors.New("cluster link: a forwarded request is not forwarded again")

// serveHTTP turns a request from the link back into the visitor's and
// gives it to the Handler.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	expect := r.Header.Get(headerContinue) != ""
	f, err := parseForwarded(r.Header)
	if err != nil {
		s.log.Warn("cluster link request refused", zap.Error(err))
		http.Error(w, "cluster link: "+err.Error(), http.StatusBadRequest)
		return
	}
	stripLinkHeaders(r.Header)
	// The hardening of the holder (rate limits, access rules, the
	// address headers the app gets) sees the visitor, as if the request
	// had come to this node. Only an authenticated node can have set
	// these headers.
	r.RemoteAddr = f.visitor.String()
	r.TLS = f.tls
	r = r.WithContext(context.WithValue(r.Context(), forwardedKey{}, f.from))
	s.stats.httpIn.Add(1)
	cw := &continueWriter{ResponseWriter: w}
	if expect {
		// net/http has taken the Expect header off; this link header
		// says the forwarding node set it: see continueWriter.
		cw.need.Store(true)
		r.Body = &continueBody{ReadCloser: r.Body, cw: cw}
	}
	rec := &httpfwd.Recorder{ResponseWriter: cw}
	err = s.h.ServeForwardedHTTP(rec, r, f.host, f.gen)
	if err == nil {
		return
	}
	if rec.Status != 0 {
		if !errors.Is(err, http.ErrAbortHandler) {
			s.log.Debug("cluster link handler failed after answering", zap.String("host", f.host), zap.Error(err))
		}
		return
	}
	if errors.Is(err, ErrStale) {
		s.stats.staleIn.Add(1)
		// The body was not read: the forwarding node sent the request
		// with Expect: 100-continue, so none of it was sent either, and
		// it can send the request again elsewhere.
		w.Header().Set(headerStale, f.nonce)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusMisdirectedRequest)
		return
	}
	s.log.Info("cluster link handler failed", zap.String("host", f.host), zap.Error(err))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "porthole: the node holding this tunnel could not serve the request\n")
}

// continueWriter lets a request's body come once the Handler has taken
// the request. The forwarding node sends each request that has a body
// with Expect: 100-continue and holds the body back until a 100
// Continue arrives, so that after a stale answer the body is still
// whole for another node. net/http sends the 100 Continue when the
// Handler first reads the body; a Handler that answers first (a full
// duplex one) must get the body too, so the 100 goes out before its
// first header, write or flush.
type continueWriter struct {
	http.ResponseWriter
	need atomic.Bool
	once sync.Once
}

func (c *continueWriter) cont() {
	if c.need.Load() {
		c.once.Do(func() { c.ResponseWriter.WriteHeader(http.StatusContinue) })
	}
}

func (c *continueWriter) WriteHeader(code int) {
	if code >= 200 {
		c.cont()
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *continueWriter) Write(p []byte) (int, error) {
	c.cont()
	return c.ResponseWriter.Write(p)
}

func (c *continueWriter) Flush() {
	c.cont()
	http.NewResponseController(c.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection (hijacking).
func (c *continueWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// continueBody marks the body read: net/http has sent the 100 Continue
// itself then.
type continueBody struct {
	io.ReadCloser
	cw *continueWriter
}

func (b *continueBody) Read(p []byte) (int, error) {
	b.cw.once.Do(func() {})
	return b.ReadCloser.Read(p)
}
