package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// sampleMessages has one fully populated message of every type.
func sampleMessages() []Message {
	return []Message{
		&Hello{Version: Version, ClientVersion: "1.2.3", APIKey: "ph_key", Token: "a.b.c", ResumeToken: "0123456789abcdef0123", Link: 1},
		&Welcome{SessionID: "s1", ResumeToken: "secret", ServerVersion: "1.2.3", User: "alice", HeartbeatMillis: 8000},
		&Bind{ID: 7, Name: "web", Kind: KindHTTP, Subdomain: "quiet-otter-31", Hostname: "app.example.org", RemotePort: 20001, Random: true},
		&Bound{ID: 7, TunnelID: "t1", Hostname: "quiet-otter-31.localhost", Port: 20001, URLs: []string{"https://a.example.com", "http://a.example.com"}},
		&Error{ID: 7, Code: CodeNameTaken, Message: "taken", Final: true, RetryAfterMillis: 1500},
		&Unbind{TunnelID: "t1"},
		&Ping{Seq: 1 << 60, UnixNano: 1700000000000000000},
		&Pong{Seq: 42, UnixNano: -1},
		&Notice{Kind: NoticeRevoked, Message: "key revoked", Final: true},
		&GoAway{Reason: "server is restarting", DeadlineMillis: 30000},
	}
}

func frame(t MsgType, payload []byte) []byte {
	b := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func TestRoundTripEveryMessage(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	msgs := sampleMessages()
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatalf("write %T: %v", m, err)
		}
	}
	r := NewReader(&buf)
	for _, want := range msgs {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("read %T: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %T:\n got %#v\nwant %#v", want, got, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

func TestFrameLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(&Unbind{TunnelID: "x"}); err != nil {
		t.Fatal(err)
	}
	want := frame(TypeUnbind, []byte(`{"tunnel_id":"x"}`))
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame bytes\n got %q\nwant %q", buf.Bytes(), want)
	}
}

func TestWriterRefusesOversize(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	// {"version":1,"api_key":"..."} with the key sized to hit the cap exactly.
	overhead := len(`{"version":1,"api_key":""}`)
	exact := &Hello{Version: 1, APIKey: strings.Repeat("k", MaxMessageSize-overhead)}
	if err := w.Write(exact); err != nil {
		t.Fatalf("a payload of exactly MaxMessageSize must be accepted: %v", err)
	}
	got, err := NewReader(bytes.NewReader(buf.Bytes())).Read()
	if err != nil || !reflect.DeepEqual(got, exact) {
		t.Fatalf("reading a maximal frame: %v", err)
	}
	buf.Reset()
	over := &Hello{Version: 1, APIKey: strings.Repeat("k", MaxMessageSize-overhead+1)}
	err = w.Write(over)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize write: got %v, want ErrTooLarge", err)
	}
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Type != TypeHello {
		t.Fatalf("oversize write error %v should be a *FrameError for hello", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("an oversize write wrote %d bytes; it must write nothing", buf.Len())
	}
}

// failReader fails the test if the decoder reads past the frame header of
// an oversize frame: the payload must never be buffered.
type failReader struct {
	t   *testing.T
	hdr []byte
}

func (r *failReader) Read(p []byte) (int, error) {
	if len(r.hdr) == 0 {
		r.t.Fatal("decoder read the payload of an oversize frame")
	}
	n := copy(p, r.hdr)
	r.hdr = r.hdr[n:]
	return n, nil
}

func TestReaderRejectsOversizeFrame(t *testing.T) {
	for _, n := range []uint32{MaxMessageSize + 1, 1 << 31, 0xffffffff} {
		hdr := make([]byte, frameHeaderSize)
		hdr[0] = byte(TypeBind)
		binary.BigEndian.PutUint32(hdr[1:], n)
		_, err := NewReader(&failReader{t: t, hdr: hdr}).Read()
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("length %d: got %v, want ErrTooLarge", n, err)
		}
		if !strings.Contains(err.Error(), "bind") {
			t.Errorf("error %q should name the message type", err)
		}
	}
	// Unknown types are capped too: skipping is not a way around the limit.
	hdr := frame(0x7f, nil)
	binary.BigEndian.PutUint32(hdr[1:], MaxMessageSize+1)
	if _, err := NewReader(&failReader{t: t, hdr: hdr}).Read(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize unknown type: got %v, want ErrTooLarge", err)
	}
}

func TestReaderTruncated(t *testing.T) {
	full := frame(TypePing, []byte(`{"seq":1,"t":2}`))
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"half a header", full[:3], io.ErrUnexpectedEOF},
		{"header only", full[:frameHeaderSize], io.ErrUnexpectedEOF},
		{"half a payload", full[:len(full)-4], io.ErrUnexpectedEOF},
		{"unknown type, half a payload", frame(0x70, []byte("abcdef"))[:8], io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in)).Read()
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReaderMalformed(t *testing.T) {
	tests := []struct {
		name    string
		typ     MsgType
		payload string
	}{
		{"not json", TypeHello, "hello"},
		{"truncated json", TypeBind, `{"id":1,"kind":"ht`},
		{"wrong field type", TypeHello, `{"version":"one"}`},
		{"array", TypeWelcome, `[1,2,3]`},
		{"number overflow", TypeBind, `{"id":99999999999}`},
		{"empty payload", TypePing, ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(frame(tc.typ, []byte(tc.payload)))).Read()
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			var fe *FrameError
			if !errors.As(err, &fe) || fe.Type != tc.typ {
				t.Fatalf("error %v should be a *FrameError of type %v", err, tc.typ)
			}
		})
	}
}

func TestReaderSkipsUnknownTypes(t *testing.T) {
	var in []byte
	in = append(in, frame(0x00, nil)...)
	in = append(in, frame(0x7f, []byte(`{"some":"future message"}`))...)
	in = append(in, frame(0xff, []byte("\x00\x01 not even json"))...)
	in = append(in, frame(TypePing, []byte(`{"seq":9,"t":1,"later_field":true}`))...)
	r := NewReader(bytes.NewReader(in))
	m, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := m.(*Ping); !ok || p.Seq != 9 {
		t.Fatalf("got %#v, want the ping after the unknown frames", m)
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

func TestExpect(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Write(&Welcome{SessionID: "s"})
	w.Write(&Ping{Seq: 1})
	w.Write(Err(CodeUnsupportedVersion, true, "speak version %d", 1))
	r := NewReader(&buf)

	wel, err := Expect[*Welcome](r)
	if err != nil || wel.SessionID != "s" {
		t.Fatalf("Expect welcome: %v %v", wel, err)
	}
	_, err = Expect[*Welcome](r)
	if !errors.Is(err, ErrUnexpected) || !strings.Contains(err.Error(), "wanted welcome") {
		t.Fatalf("Expect welcome on a ping: got %v, want ErrUnexpected naming welcome", err)
	}
	_, err = Expect[*Welcome](r)
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeUnsupportedVersion || !perr.Final {
		t.Fatalf("Expect on an error message should return that error, got %v", err)
	}
	if perr.Error() != "speak version 1" {
		t.Fatalf("Error() = %q", perr.Error())
	}
	if (&Error{Code: CodeInternal}).Error() != "internal" {
		t.Fatal("an Error without a message should read as its code")
	}
}

// TestWriterConcurrent writes from many goroutines at once: every frame
// must arrive whole (run with -race).
func TestWriterConcurrent(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewWriter(a)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := w.Write(&Ping{Seq: uint64(i*each + j), UnixNano: int64(j)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	r := NewReader(b)
	seen := make(map[uint64]bool)
	for range writers * each {
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		p := m.(*Ping)
		if seen[p.Seq] {
			t.Fatalf("ping %d twice", p.Seq)
		}
		seen[p.Seq] = true
	}
	wg.Wait()
}

func TestStreamHeaderRoundTrip(t *testing.T) {
	h := &StreamHeader{TunnelID: "t1", RemoteAddr: "[2001:db8::1]:443", PublicAddr: "127.0.0.1:8080"}
	cw := &countingWriter{}
	if err := WriteStreamHeader(cw, h); err != nil {
		t.Fatal(err)
	}
	if cw.writes != 1 {
		t.Errorf("stream header written with %d writes, want 1", cw.writes)
	}
	if cw.buf.Bytes()[0] != streamHeaderVersion {
		t.Errorf("first byte %d, want version %d", cw.buf.Bytes()[0], streamHeaderVersion)
	}
	if n := binary.BigEndian.Uint16(cw.buf.Bytes()[1:3]); int(n) != cw.buf.Len()-3 {
		t.Errorf("length prefix %d, payload %d", n, cw.buf.Len()-3)
	}
	// Bytes after the header belong to the visitor and must stay unread.
	cw.buf.WriteString("GET / HTTP/1.1\r\n")
	rd := bytes.NewReader(cw.buf.Bytes())
	got, err := ReadStreamHeader(rd)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *h {
		t.Fatalf("got %+v, want %+v", got, h)
	}
	rest, _ := io.ReadAll(rd)
	if string(rest) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("the header reader consumed visitor bytes; left %q", rest)
	}
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func streamHeaderBytes(version byte, payload string) []byte {
	b := []byte{version, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	return append(b, payload...)
}

func TestStreamHeaderLimits(t *testing.T) {
	valid := streamHeaderBytes(1, `{"tunnel_id":"t"}`)
	oversize := []byte{1, 0, 0}
	binary.BigEndian.PutUint16(oversize[1:], MaxStreamHeaderSize+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short prefix", valid[:2], io.ErrUnexpectedEOF},
		{"prefix only", valid[:3], io.ErrUnexpectedEOF},
		{"short payload", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"bad version", streamHeaderBytes(2, `{"tunnel_id":"t"}`), ErrMalformed},
		{"version zero", streamHeaderBytes(0, `{"tunnel_id":"t"}`), ErrMalformed},
		{"oversize", oversize, ErrTooLarge},
		{"not json", streamHeaderBytes(1, `tunnel t`), ErrMalformed},
		{"no tunnel id", streamHeaderBytes(1, `{"remote_addr":"1.2.3.4:5"}`), ErrMalformed},
		{"empty payload", streamHeaderBytes(1, ``), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadStreamHeader(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// The largest allowed payload is accepted.
	pad := MaxStreamHeaderSize - len(`{"tunnel_id":"t","remote_addr":""}`)
	max := streamHeaderBytes(1, `{"tunnel_id":"t","remote_addr":"`+strings.Repeat("a", pad)+`"}`)
	if _, err := ReadStreamHeader(bytes.NewReader(max)); err != nil {
		t.Fatalf("a header of exactly MaxStreamHeaderSize: %v", err)
	}
	// The writer refuses what the reader would.
	var buf bytes.Buffer
	err := WriteStreamHeader(&buf, &StreamHeader{TunnelID: "t", RemoteAddr: strings.Repeat("a", MaxStreamHeaderSize)})
	if !errors.Is(err, ErrTooLarge) || buf.Len() != 0 {
		t.Fatalf("oversize header write: err %v, %d bytes written", err, buf.Len())
	}
}

func TestRefusal(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteRefusal(rec, http.StatusTooManyRequests, &Error{Code: CodeRateLimited, Message: "slow down", RetryAfterMillis: 1500})
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != RefusalContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After %q, want 2 (1.5 s rounded up)", ra)
	}
	e, ok := DecodeRefusal(rec.Body.Bytes())
	if !ok || e.Code != CodeRateLimited || e.Message != "slow down" || e.Final {
		t.Fatalf("DecodeRefusal: %+v %v", e, ok)
	}
	rec = httptest.NewRecorder()
	WriteRefusal(rec, http.StatusUnauthorized, Err(CodeUnauthorized, true, "bad key"))
	if rec.Header().Get("Retry-After") != "" {
		t.Fatal("Retry-After set without retry_after_ms")
	}
	for _, body := range []string{"", "<html>502 Bad Gateway</html>", `{"message":"no code"}`, `{"code":`} {
		if _, ok := DecodeRefusal([]byte(body)); ok {
			t.Errorf("DecodeRefusal(%q) accepted a body that is not a porthole refusal", body)
		}
	}
}

func TestMsgTypeString(t *testing.T) {
	if MsgType(0x42).String() != "unknown" {
		t.Fatal("an unknown type should print as unknown")
	}
	fe := &FrameError{Type: TypeBind, Err: ErrMalformed, Info: "x"}
	if !strings.Contains(fe.Error(), "0x03 bind") {
		t.Fatalf("FrameError %q should show type number and name", fe.Error())
	}
}
