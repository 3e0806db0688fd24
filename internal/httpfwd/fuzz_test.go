package httpfwd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// referenceResponse is what the fast path must answer for data, worked
// out with net/http alone: the final response after the 1xx ones, if
// every header block (each response's status line and fields, up to the
// blank line) is at most maxBytes with at most maxFields fields, and
// there are at most MaxInformational 1xx responses.
func referenceResponse(data []byte, req *http.Request, maxBytes, maxFields int) (*http.Response, bool) {
	cr := &countingReader{r: bytes.NewReader(data)}
	br := bufio.NewReader(cr)
	for informational := 0; ; informational++ {
		before := cr.n - br.Buffered()
		resp, err := http.ReadResponse(br, req)
		if err != nil || cr.n-br.Buffered()-before > maxBytes || fieldCount(resp.Header) > maxFields {
			return nil, false
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 {
			return resp, true
		}
		if informational == MaxInformational {
			return nil, false
		}
	}
}

var fuzzBufSizes = []int{16, 64, 4096, bufSize}

// FuzzReadResponse feeds arbitrary bytes, as an upstream's answer, to the
// fast path's response reader (through buffers of several sizes). It must
// agree with net/http's own reader held to the same limits: the same
// responses accepted, with the same status, header and body, and the
// others refused; and it must read a bounded number of bytes from the
// connection before deciding, whatever the answer's size.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), uint8(0), false)
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), uint8(1), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), uint8(2), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), uint8(3), true)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), uint8(2), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n"), uint8(0), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nX-Big: "+string(bytes.Repeat([]byte("a"), 300))+"\r\n\r\n"), uint8(1), false)
	f.Add([]byte("HTTP/1.0 302 Found\r\nLocation: /x\r\n folded\r\nConnection: close\r\n\r\nbody"), uint8(3), false)
	f.Add([]byte("HTTP/1.1 099 Odd\r\n\r\n"), uint8(0), false)
	f.Add([]byte("HTTP/1.1 200\r\n\r\n"), uint8(0), false)
	f.Add([]byte{}, uint8(0), false)

	const maxBytes, maxFields = 256, 8
	f.Fuzz(func(t *testing.T, data []byte, bufChoice uint8, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req, _ := http.NewRequest(method, "http://upstream/", nil)
		size := fuzzBufSizes[int(bufChoice)%len(fuzzBufSizes)]
		tr := &Transport{MaxHeaderBytes: maxBytes, MaxHeaderFields: maxFields}
		cr := &countingReader{r: bytes.NewReader(data)}
		c := &conn{lim: headerLimit{r: cr}}
		c.br = bufio.NewReaderSize(&c.lim, size)

		resp, err := tr.readFinal(c, req)
		if bound := (MaxInformational + 1) * (maxBytes + max(size, 16)); cr.n > bound {
			t.Fatalf("read %d bytes before deciding, bound %d", cr.n, bound)
		}
		want, ok := referenceResponse(data, req, maxBytes, maxFields)
		if err != nil {
			if resp != nil {
				t.Fatalf("both a response and %v", err)
			}
			if ok {
				t.Fatalf("refused (%v) a response net/http reads within the limits: %d %v", err, want.StatusCode, want.Header)
			}
			var le *LimitError
			if errors.As(err, &le) && le.Limit <= 0 {
				t.Fatalf("limit error without its limit: %v", err)
			}
			return
		}
		if !ok {
			t.Fatalf("accepted %d %v, which net/http refuses within the limits", resp.StatusCode, resp.Header)
		}
		if resp.StatusCode != want.StatusCode || resp.Proto != want.Proto || resp.ContentLength != want.ContentLength ||
			resp.Close != want.Close || !reflect.DeepEqual(resp.Header, want.Header) ||
			!reflect.DeepEqual(resp.TransferEncoding, want.TransferEncoding) {
			t.Fatalf("got %d %s %v, net/http reads %d %s %v", resp.StatusCode, resp.Proto, resp.Header, want.StatusCode, want.Proto, want.Header)
		}
		if fieldCount(resp.Header) > maxFields {
			t.Fatalf("%d fields accepted", fieldCount(resp.Header))
		}
		got, gerr := io.ReadAll(resp.Body)
		exp, werr := io.ReadAll(want.Body)
		if !bytes.Equal(got, exp) || (gerr == nil) != (werr == nil) {
			t.Fatalf("body %q (%v), net/http reads %q (%v)", got, gerr, exp, werr)
		}
	})
}
