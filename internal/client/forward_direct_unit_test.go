package client

import (
	"bufio"
	"strings"
	"testing"
)

func TestPlainRequest(t *testing.T) {
	for _, c := range []struct {
		req  string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"HEAD /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", true},
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 3\r\n\r\nabc", false},
		{"GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n", false}, // header not complete
		{"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	} {
		br := bufio.NewReader(strings.NewReader(c.req))
		if got := plainRequest(br); got != c.want {
			t.Errorf("%q: %v, want %v", c.req, got, c.want)
		}
	}
}
