package client

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// A gRPC app that resets a stream (RST_STREAM) ends the call with the
// reset's code; the tunnel hop is HTTP/1.1 and cannot carry a reset, so
// the client answers for it in gRPC's terms: a Trailers-Only response
// with the status a direct gRPC client would have reported. Without it
// the visitor would get a 502 page, which gRPC clients read as
// Unavailable, where a direct call says DeadlineExceeded or Canceled.

// grpcReset turns the error of a gRPC request reset by the app into that
// response; ok is false for other errors.
func grpcReset(req *http.Request, err error, start time.Time) (*http.Response, bool) {
	var se http2.StreamError
	if !errors.As(err, &se) {
		return nil, false
	}
	code, msg := grpcCodeForReset(se.Code)
	// RST_STREAM CANCEL from a server whose deadline passed is how gRPC
	// servers end a call that ran out of time (grpc-go's client makes the
	// same correction). The app's timer started after this request was
	// sent, so the app cannot time out before start+timeout.
	if se.Code == http2.ErrCodeCancel {
		if d, ok := grpcTimeout(req.Header.Get("Grpc-Timeout")); ok && time.Since(start) >= d {
			code, msg = 4, "deadline exceeded: the local app ended the call at its deadline"
		}
	}
	h := http.Header{}
	h.Set("Content-Type", req.Header.Get("Content-Type"))
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Body: http.NoBody, ContentLength: 0, Request: req,
	}, true
}

// grpcCodeForReset maps an HTTP/2 error code to a gRPC status code, as
// the gRPC protocol's "Errors" section says clients do.
func grpcCodeForReset(c http2.ErrCode) (int, string) {
	switch c {
	case http2.ErrCodeCancel:
		return 1, "the local app cancelled the call"
	case http2.ErrCodeRefusedStream:
		return 14, "the local app refused the stream"
	case http2.ErrCodeEnhanceYourCalm:
		return 8, "the local app asked to slow down (ENHANCE_YOUR_CALM)"
	case http2.ErrCodeInadequateSecurity:
		return 7, "the local app found the connection's security inadequate"
	}
	return 13, "the local app reset the stream: " + c.String()
}

// grpcTimeout parses a grpc-timeout value: at most 8 digits and a unit.
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}
