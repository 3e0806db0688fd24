package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// frameHeaderSize is the size of a control frame header: one type byte and a
// big-endian uint32 payload length.
const frameHeaderSize = 5

// Errors returned by the decoder. They wrap into a *FrameError with detail.
var (
	ErrTooLarge   = errors.New("control message too large")
	ErrMalformed  = errors.New("malformed control message")
	ErrUnexpected = errors.New("unexpected control message")
)

// FrameError describes why a frame could not be decoded.
type FrameError struct {
	Type MsgType
	Err  error
	Info string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("%v (type 0x%02x %s): %s", e.Err, byte(e.Type), e.Type, e.Info)
}

func (e *FrameError) Unwrap() error { return e.Err }

// Writer encodes control messages. It is safe for concurrent use: heartbeats
// and answers to binds are written from different goroutines.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write encodes m as one frame. A message whose payload exceeds
// MaxMessageSize is refused without writing anything.
func (w *Writer) Write(m Message) error {
	payload, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(payload) > MaxMessageSize {
		return &FrameError{Type: m.Type(), Err: ErrTooLarge, Info: fmt.Sprintf("%d bytes, limit %d", len(payload), MaxMessageSize)}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf[:0], byte(m.Type()), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(w.buf[1:frameHeaderSize], uint32(len(payload)))
	w.buf = append(w.buf, payload...)
	_, err = w.w.Write(w.buf)
	return err
}

// Reader decodes control messages. It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	hdr [frameHeaderSize]byte
	buf []byte
	// onFrame sees every frame's type, known or not, before its payload
	// is read; an error from it ends Read.
	onFrame func(MsgType) error
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// OnFrame calls f with the type of every frame read from now on, also of
// the frames Read skips, so that a rate limit counts what a peer sends
// rather than what this version understands. An error from f is returned
// by Read, and the stream must then be closed.
func (r *Reader) OnFrame(f func(MsgType) error) { r.onFrame = f }

// Read returns the next message. Frames of a type this version does not know
// are skipped, so that a newer peer may send optional messages; a frame over
// the size cap or with a payload that does not decode is an error after
// which the stream must be closed.
func (r *Reader) Read() (Message, error) {
	for {
		if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
			return nil, err
		}
		t := MsgType(r.hdr[0])
		n := binary.BigEndian.Uint32(r.hdr[1:])
		if r.onFrame != nil {
			if err := r.onFrame(t); err != nil {
				return nil, err
			}
		}
		if n > MaxMessageSize {
			return nil, &FrameError{Type: t, Err: ErrTooLarge, Info: fmt.Sprintf("%d bytes, limit %d", n, MaxMessageSize)}
		}
		if cap(r.buf) < int(n) {
			r.buf = make([]byte, n)
		}
		payload := r.buf[:n]
		if _, err := io.ReadFull(r.r, payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		m := newMessage(t)
		if m == nil {
			continue
		}
		if err := json.Unmarshal(payload, m); err != nil {
			return nil, &FrameError{Type: t, Err: ErrMalformed, Info: err.Error()}
		}
		return m, nil
	}
}

// Expect reads the next message and requires it to be of type T.
func Expect[T Message](r *Reader) (T, error) {
	var zero T
	m, err := r.Read()
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		if e, isErr := m.(*Error); isErr {
			return zero, e
		}
		return zero, &FrameError{Type: m.Type(), Err: ErrUnexpected, Info: fmt.Sprintf("wanted %s", zero.Type())}
	}
	return t, nil
}
