package protocol

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// streamHeaderVersion is the first byte of every proxied stream.
const streamHeaderVersion = 1

// StreamHeader opens every stream the server opens to a client: it says
// which tunnel the stream belongs to and who the visitor is. After it, the
// stream carries the visitor's bytes (an HTTP/1.1 connection for HTTP
// tunnels, raw bytes for TCP tunnels).
type StreamHeader struct {
	TunnelID   string `json:"tunnel_id"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	// PublicAddr is the listener address the visitor connected to.
	PublicAddr string `json:"public_addr,omitempty"`
}

// WriteStreamHeader writes h to w as one write: a version byte, a big-endian
// uint16 length and the JSON payload.
func WriteStreamHeader(w io.Writer, h *StreamHeader) error {
	payload, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(payload) > MaxStreamHeaderSize {
		return fmt.Errorf("%w: stream header %d bytes, limit %d", ErrTooLarge, len(payload), MaxStreamHeaderSize)
	}
	buf := make([]byte, 3, 3+len(payload))
	buf[0] = streamHeaderVersion
	binary.BigEndian.PutUint16(buf[1:], uint16(len(payload)))
	_, err = w.Write(append(buf, payload...))
	return err
}

// ReadStreamHeader reads what WriteStreamHeader wrote.
func ReadStreamHeader(r io.Reader) (*StreamHeader, error) {
	var pre [3]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, err
	}
	if pre[0] != streamHeaderVersion {
		return nil, fmt.Errorf("%w: stream header version %d, want %d", ErrMalformed, pre[0], streamHeaderVersion)
	}
	n := binary.BigEndian.Uint16(pre[1:])
	if int(n) > MaxStreamHeaderSize {
		return nil, fmt.Errorf("%w: stream header %d bytes, limit %d", ErrTooLarge, n, MaxStreamHeaderSize)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	h := new(StreamHeader)
	if err := json.Unmarshal(payload, h); err != nil {
		return nil, fmt.Errorf("%w: stream header: %v", ErrMalformed, err)
	}
	if h.TunnelID == "" {
		return nil, fmt.Errorf("%w: stream header without tunnel id", ErrMalformed)
	}
	return h, nil
}
