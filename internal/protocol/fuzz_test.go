package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the control message decoder. It must
// never panic, never return a message and an error together, and every
// message it returns must survive a re-encode unchanged.
func FuzzReader(f *testing.F) {
	var all bytes.Buffer
	w := NewWriter(&all)
	for _, m := range sampleMessages() {
		var one bytes.Buffer
		NewWriter(&one).Write(m)
		f.Add(one.Bytes())
		f.Add(one.Bytes()[:one.Len()/2])
		w.Write(m)
	}
	f.Add(all.Bytes())
	f.Add([]byte{})
	f.Add(frame(0x7f, []byte("future")))
	f.Add(frame(TypeHello, []byte("{")))
	f.Add(frame(TypeBound, []byte(`{"urls":null}`)))
	f.Add(frame(TypeError, []byte(`{"code":"x","final":"yes"}`)))
	over := frame(TypeHello, nil)
	binary.BigEndian.PutUint32(over[1:], MaxMessageSize+1)
	f.Add(over)

	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for range 1000 {
			m, err := r.Read()
			if err != nil {
				if m != nil {
					t.Fatalf("Read returned both %#v and %v", m, err)
				}
				var fe *FrameError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &fe) {
					t.Fatalf("unexpected error kind %T: %v", err, err)
				}
				return
			}
			var buf bytes.Buffer
			if err := NewWriter(&buf).Write(m); err != nil {
				// A decoded payload was at most MaxMessageSize; its
				// re-encoding may grow only by escaping, which the
				// writer rightly refuses past the cap.
				if errors.Is(err, ErrTooLarge) {
					continue
				}
				t.Fatalf("re-encoding %#v: %v", m, err)
			}
			again, err := NewReader(&buf).Read()
			if err != nil {
				t.Fatalf("decoding the re-encoding of %#v: %v", m, err)
			}
			if !reflect.DeepEqual(m, again) {
				t.Fatalf("re-encode changed the message:\n%#v\n%#v", m, again)
			}
		}
	})
}

// FuzzStreamHeader feeds arbitrary bytes to the stream header decoder. It
// must never panic, never read past the header's declared length, and
// every header it accepts must have a tunnel id and survive a re-encode.
func FuzzStreamHeader(f *testing.F) {
	var buf bytes.Buffer
	WriteStreamHeader(&buf, &StreamHeader{TunnelID: "t1", RemoteAddr: "127.0.0.1:5555", PublicAddr: "[::1]:8080"})
	f.Add(buf.Bytes())
	f.Add(append(buf.Bytes(), "GET / HTTP/1.1\r\n\r\n"...))
	f.Add(buf.Bytes()[:4])
	f.Add([]byte{})
	f.Add(streamHeaderBytes(1, `{}`))
	f.Add(streamHeaderBytes(1, `{"tunnel_id":""}`))
	f.Add(streamHeaderBytes(2, `{"tunnel_id":"t"}`))
	f.Add([]byte{1, 0xff, 0xff})
	f.Add(streamHeaderBytes(1, `{"tunnel_id":"\u00e9\ud800"}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		rd := bytes.NewReader(data)
		h, err := ReadStreamHeader(rd)
		if err != nil {
			if h != nil {
				t.Fatalf("returned both %+v and %v", h, err)
			}
			return
		}
		if h.TunnelID == "" {
			t.Fatal("accepted a header without a tunnel id")
		}
		consumed := len(data) - rd.Len()
		if consumed > 3+MaxStreamHeaderSize || consumed != 3+int(binary.BigEndian.Uint16(data[1:3])) {
			t.Fatalf("consumed %d bytes for a header declaring %d", consumed, binary.BigEndian.Uint16(data[1:3]))
		}
		var out bytes.Buffer
		if err := WriteStreamHeader(&out, h); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatal(err)
		}
		again, err := ReadStreamHeader(&out)
		if err != nil || *again != *h {
			t.Fatalf("re-encode: %+v %v, want %+v", again, err, h)
		}
	})
}
