package inspect

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestStore(t *testing.T, capacity int, limit ByteSize) *Store {
	t.Helper()
	s, err := NewStore(Config{Capacity: capacity, BodyLimit: limit}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func record(s *Store, method, path string, reqBody, respBody []byte, status int) *Exchange {
	r, _ := http.NewRequest(method, "http://app.localhost"+path, nil)
	r.RequestURI = path
	x := s.Begin("web", r, "192.0.2.1")
	x.WriteRequestBody(reqBody)
	x.SetResponse(status, http.Header{"Content-Type": {"text/plain"}})
	x.WriteResponseBody(respBody)
	x.Finish(nil)
	return x
}

func TestRingKeepsNewestAndReleasesMemory(t *testing.T) {
	s := newTestStore(t, 3, 4)
	for i := 1; i <= 5; i++ {
		record(s, "GET", fmt.Sprintf("/%d", i), []byte("abcdef"), []byte("xyz"), 200)
	}
	got := s.Recent(10)
	if len(got) != 3 || got[0].Path != "/5" || got[2].Path != "/3" {
		t.Fatalf("Recent = %+v, want /5 /4 /3", got)
	}
	if _, ok := s.Detail(2); ok {
		t.Error("exchange 2 should have been evicted")
	}
	st := s.Stats()
	// 3 kept x (4 of 6 request bytes + 3 response bytes).
	if st.Kept != 3 || st.Evicted != 2 || st.StoredBytes != 3*7 {
		t.Errorf("stats = %+v, want 3 kept, 2 evicted, 21 bytes", st)
	}
	if st.Truncated != 5 {
		t.Errorf("truncated = %d, want 5 (every request body was cut)", st.Truncated)
	}
	s.Clear()
	if st := s.Stats(); st.Kept != 0 || st.StoredBytes != 0 {
		t.Errorf("after Clear: %+v", st)
	}
}

func TestEvictedInFlightExchangeStopsStoring(t *testing.T) {
	s := newTestStore(t, 1, 1<<10)
	r, _ := http.NewRequest("POST", "http://a.localhost/upload", nil)
	slow := s.Begin("web", r, "")
	slow.WriteRequestBody(bytes.Repeat([]byte("a"), 100))
	record(s, "GET", "/next", nil, []byte("ok"), 200) // takes the only slot
	slow.WriteRequestBody(bytes.Repeat([]byte("a"), 100))
	slow.Finish(nil)
	if got := s.Stats().StoredBytes; got != 2 {
		t.Errorf("stored bytes = %d, want 2 (only the kept exchange's body)", got)
	}
}

func TestDetailRendersBodies(t *testing.T) {
	s := newTestStore(t, 10, 1<<10)
	r, _ := http.NewRequest("POST", "http://a.localhost/api?q=1", nil)
	r.RequestURI = "/api?q=1"
	r.Header.Set("Content-Type", "application/json")
	x := s.Begin("web", r, "192.0.2.1")
	x.WriteRequestBody([]byte(`{"b":[1,2],`))
	x.WriteRequestBody([]byte(`"a":"x"}`))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("hello, gzip"))
	zw.Close()
	x.SetResponse(201, http.Header{"Content-Encoding": {"gzip"}, "Content-Type": {"text/plain"}})
	x.WriteResponseBody(gz.Bytes())
	x.Finish(nil)

	d, ok := s.Detail(x.ID())
	if !ok {
		t.Fatal("exchange not kept")
	}
	if d.Status != 201 || d.Method != "POST" || d.Path != "/api?q=1" || d.RemoteAddr != "192.0.2.1" {
		t.Errorf("summary = %+v", d.Summary)
	}
	if d.Request.Body.Kind != "json" || d.Request.Body.Display != "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": \"x\"\n}" {
		t.Errorf("request body = %+v", d.Request.Body)
	}
	if d.Response.Body.Kind != "text" || d.Response.Body.Decoded != "gzip" || d.Response.Body.Display != "hello, gzip" {
		t.Errorf("response body = %+v", d.Response.Body)
	}
}

func TestRenderBody(t *testing.T) {
	h := func(ct string) http.Header { return http.Header{"Content-Type": {ct}} }
	cases := []struct {
		name    string
		body    []byte
		size    int64
		h       http.Header
		kind    string
		display string
	}{
		{"empty", nil, 0, h(""), "empty", ""},
		{"json by type", []byte(`[1]`), 3, h("application/problem+json"), "json", "[\n  1\n]"},
		{"json sniffed", []byte(` {"a":1}`), 8, h(""), "json", "{\n  \"a\": 1\n}"},
		{"cut json is text", []byte(`{"a":`), 100, h("application/json"), "text", `{"a":`},
		{"text", []byte("héllo\n"), 7, h("text/plain"), "text", "héllo\n"},
		{"rune cut at the limit", []byte("h\xc3"), 3, h("text/plain"), "text", "h\xc3"},
		{"binary", []byte{0, 1, 2, 0xff}, 4, h("application/octet-stream"), "binary", "00000000  00 01 02 ff                                       |....|\n"},
	}
	for _, c := range cases {
		b := RenderBody(c.body, c.size, c.h, 1<<10)
		if b.Kind != c.kind || b.Display != c.display {
			t.Errorf("%s: kind %q display %q, want %q %q", c.name, b.Kind, b.Display, c.kind, c.display)
		}
		if b.Truncated != (c.size > int64(len(c.body))) {
			t.Errorf("%s: truncated = %v", c.name, b.Truncated)
		}
	}
}

func TestGzipBombIsCapped(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("a"), 10<<20))
	zw.Close()
	b := RenderBody(gz.Bytes(), int64(gz.Len()), http.Header{"Content-Encoding": {"gzip"}}, 1<<10)
	if len(b.Display) != 1<<10 {
		t.Errorf("decoded display is %d bytes, want the 1 KiB limit", len(b.Display))
	}
}

func TestChangesWakesAndResets(t *testing.T) {
	s := newTestStore(t, 5, 0)
	all, reset, seq, wake := s.Changes(0)
	if !reset || len(all) != 0 {
		t.Fatalf("first Changes: reset=%v n=%d", reset, len(all))
	}
	record(s, "GET", "/a", nil, nil, 204)
	select {
	case <-wake:
	case <-time.After(time.Second):
		t.Fatal("no wake-up after a change")
	}
	changed, reset, seq2, _ := s.Changes(seq)
	if reset || len(changed) != 1 || changed[0].Status != 204 || !changed[0].Done {
		t.Fatalf("Changes = %+v reset=%v", changed, reset)
	}
	s.Clear()
	if _, reset, _, _ := s.Changes(seq2); !reset {
		t.Error("Changes after Clear should reset")
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	s := newTestStore(t, 8, 64)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				record(s, "GET", "/x", []byte(strings.Repeat("r", 100)), []byte("ok"), 200)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var since uint64
		for i := 0; i < 200; i++ {
			_, _, since, _ = s.Changes(since)
			for _, sm := range s.Recent(8) {
				s.Detail(sm.ID)
			}
		}
	}()
	wg.Wait()
	<-done
	if st := s.Stats(); st.Kept != 8 || st.StoredBytes != 8*66 {
		t.Errorf("stats = %+v, want 8 kept holding 8x66 bytes", st)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "64KiB": 64 << 10, "64k": 64 << 10, "1 MiB": 1 << 20, "2mb": 2 << 20, "10B": 10} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1GiB", "lots"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	if got := ByteSize(64 << 10).String(); got != "64KiB" {
		t.Errorf("String = %q", got)
	}
	if err := (Config{Capacity: 10, BodyLimit: MaxBodyLimit + 1}).Validate(); err == nil {
		t.Error("a body limit over the maximum was accepted")
	}
}
