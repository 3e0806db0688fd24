// Package httpfwd holds the pieces of HTTP forwarding that both ends of a
// tunnel use around net/http/httputil.ReverseProxy: Transport, the
// round-tripper that serves bodyless requests on the caller's goroutine
// over a kept-alive pool; a response recorder for access logs and
// counters; and the proxies' copy-buffer pool. The proxies themselves live
// with their owners (package server, package client).
package httpfwd

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Recorder captures a response's status and size. Unwrap lets
// http.ResponseController (which ReverseProxy uses for flushing and for
// protocol upgrades) reach the underlying writer.
type Recorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64

	informational int
}

// WriteHeader records the final status (1xx informational ones are passed
// on but not kept). It passes on at most MaxInformational 1xx responses:
// the transports end a request past that, but ReverseProxy's hook still
// writes the one that broke the limit (httptrace runs it after ours and
// takes its result), which the next hop would count against its own.
func (r *Recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if r.informational >= MaxInformational {
			return
		}
		r.informational++
	}
	if r.Status == 0 || r.Status < 200 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(p []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.Bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher for callers that type-assert.
func (r *Recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Hijack implements http.Hijacker for callers that type-assert.
// ReverseProxy hijacks only to finish a protocol upgrade, after the backend
// answered 101, and then writes that response to the raw connection itself,
// bypassing WriteHeader; so a successful hijack records 101.
func (r *Recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil && r.Status == 0 {
		r.Status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap returns the underlying writer.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// StatusOrOK returns the recorded status, 200 if nothing was written.
func (r *Recorder) StatusOrOK() int {
	if r.Status == 0 {
		return http.StatusOK
	}
	return r.Status
}

// BufferSize is the size of the proxies' copy buffers: large enough that a
// streamed body moves in few multiplexer frames.
const BufferSize = 32 << 10

// BufferPool is an httputil.BufferPool shared by all proxies.
type BufferPool struct{}

var bufs = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// Get implements httputil.BufferPool.
func (BufferPool) Get() []byte { return *(bufs.Get().(*[]byte)) }

// Put implements httputil.BufferPool.
func (BufferPool) Put(b []byte) { bufs.Put(&b) }
