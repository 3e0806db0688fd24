package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/porthole/porthole/internal/httpfwd"
)

// forwardKey carries one ForwardHTTP call's state through the proxy.
type forwardKey struct{}

type forwardState struct {
	p     *peer
	f     forwarded
	stale bool
	err   error
	body  *replayableBody
}

// ForwardHTTP forwards r to the node at addr; returns ErrStale (nothing written to w) when the holder answered 421.
//
// The request is proxied as httputil.ReverseProxy does it (bodies
// streamed both ways, server-sent events unbuffered, upgrades such as
// WebSocket, trailers, hop-by-hop headers dropped), carrying host, gen,
// and the visitor's address and TLS state to the holder. A peer that
// cannot be reached gets the visitor a 502 and a non-nil error; one
// that vanishes mid-response cuts the visitor's connection (the proxy
// panics with http.ErrAbortHandler, which net/http handles). After
// ErrStale r may be forwarded again: its body was not consumed. A
// request that came over the link itself is refused with
// ErrForwardedTwice, nothing written.
func (d *Dialer) ForwardHTTP(w http.ResponseWriter, r *http.Request, addr, host string, gen uint64) error {
	if _, ok := Forwarded(r); ok {
		return ErrForwardedTwice
	}
	visitor, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return fmt.Errorf("cluster link: visitor address %q: %w", r.RemoteAddr, err)
	}
	p, err := d.peer(addr)
	if err != nil {
		d.stats.failed.Add(1)
		d.errorPage(w, r, err)
		return err
	}
	st := &forwardState{p: p, f: forwarded{
		host:    host,
		gen:     gen,
		visitor: visitor,
		tls:     r.TLS,
		from:    d.self,
		nonce:   d.noncePrefix + strconv.FormatUint(d.nonce.Add(1), 36),
	}}
	out := r.WithContext(context.WithValue(r.Context(), forwardKey{}, st))
	if r.Body != nil && r.Body != http.NoBody {
		// ReverseProxy closes the body it is given; the visitor's must
		// stay readable for a retry after a stale answer.
		st.body = &replayableBody{r: r.Body}
		out.Body = st.body
	}
	d.stats.httpOut.Add(1)
	d.proxy.ServeHTTP(&dropContinue{w}, out)
	switch {
	case st.stale:
		d.stats.staleOut.Add(1)
		return ErrStale
	case st.err != nil:
		return st.err
	}
	return nil
}

// replayableBody passes a request body on without letting the proxy
// close the visitor's, and tells whether any of it was read. Closing it
// ends its reads (the proxy closes it on return so that the transport's
// writer, which may outlive the call, reads no more: golang/go#46866)
// but leaves the visitor's body to a retry, which wraps it anew.
type replayableBody struct {
	r      io.ReadCloser
	read   atomic.Bool
	closed atomic.Bool
}

func (b *replayableBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

func (b *replayableBody) Close() error {
	b.closed.Store(true)
	return nil
}

// errStaleResponse is ModifyResponse's error for the holder's 421.
var errStaleResponse = errors.New("stale")

func (d *Dialer) newProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(forwardKey{}).(*forwardState)
			// URL.Host keys the transport's pool of streams: one pool
			// per peer, whatever the hostname. The Host header stays the
			// visitor's.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "cluster-link"
			pr.Out.Host = pr.In.Host
			// Rewrite has dropped X-Forwarded-*; the holder sets them
			// from the visitor's address, as for a direct request.
			stripLinkHeaders(pr.Out.Header)
			setForwarded(pr.Out.Header, st.f)
			// Request trailers: Clone copied the map before the body
			// was read; the visitor's own map is filled at its end.
			if pr.In.Trailer != nil {
				pr.Out.Trailer = pr.In.Trailer
			}
			if st.body != nil && pr.Out.ContentLength != 0 {
				pr.Out.Header.Set("Expect", "100-continue")
				pr.Out.Header.Set(headerContinue, "1")
			}
		},
		Transport:  dispatch{},
		BufferPool: httpfwd.BufferPool{},
		ErrorLog:   zap.NewStdLog(d.log.Named("link-proxy")),
		ModifyResponse: func(resp *http.Response) error {
			st := resp.Request.Context().Value(forwardKey{}).(*forwardState)
			if resp.StatusCode == http.StatusMisdirectedRequest && resp.Header.Get(headerStale) == st.f.nonce {
				resp.Body.Close()
				return errStaleResponse
			}
			stripLinkHeaders(resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := r.Context().Value(forwardKey{}).(*forwardState)
			if errors.Is(err, errStaleResponse) {
				if st.body == nil || !st.body.read.Load() {
					st.stale = true
					return
				}
				// Some of the body went out before the stale answer
				// (the holder's 100 Continue, then a change of mind):
				// it cannot be sent again.
				err = errors.New("cluster link: stale claim after the request body was sent")
			}
			st.err = err
			if r.Context().Err() != nil {
				// The visitor left: nobody to answer.
				return
			}
			d.stats.failed.Add(1)
			d.log.Info("cluster link forward failed", zap.String("peer", st.p.addr), zap.String("host", st.f.host), zap.Error(err))
			d.errorPage(w, r, err)
		},
	}
}

func (d *Dialer) errorPage(w http.ResponseWriter, r *http.Request, err error) {
	if d.ErrorPage != nil {
		d.ErrorPage(w, r, http.StatusBadGateway, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Porthole-Error", "cluster_link_error")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "porthole: the node holding this tunnel could not be reached\n")
}

// dispatch sends each request over its peer's transport.
type dispatch struct{}

func (dispatch) RoundTrip(r *http.Request) (*http.Response, error) {
	st := r.Context().Value(forwardKey{}).(*forwardState)
	return st.p.tr.RoundTrip(r)
}

// dropContinue keeps the holder's 100 Continue, which was for this
// node's transport, from the visitor: this node's own server answers a
// visitor's Expect: 100-continue when the body is first read.
type dropContinue struct{ http.ResponseWriter }

func (d *dropContinue) WriteHeader(code int) {
	if code == http.StatusContinue {
		return
	}
	d.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the visitor's connection
// (flushing, hijacking for upgrades).
func (d *dropContinue) Unwrap() http.ResponseWriter { return d.ResponseWriter }
