// Package logging builds porthole's process logger: log/slog in text or
// JSON, written through a buffer so that the access log (a line per
// proxied request) does not cost a system call per request.
//
// Lines wait in the buffer at most FlushInterval; a warning or an error
// flushes at once, as does Close, so the lines that explain a failure are
// never the ones still waiting.
package logging

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// FlushInterval bounds how long a line waits in the buffer.
const FlushInterval = 100 * time.Millisecond

// New returns a logger writing to w in format ("text" or "json") at level,
// and a function that flushes and stops it.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, func(), error) {
	b := &buffer{w: bufio.NewWriterSize(w, 32<<10)}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(b, opts)
	case "json":
		h = slog.NewJSONHandler(b, opts)
	default:
		return nil, nil, fmt.Errorf("log format %q: want text or json", format)
	}
	return slog.New(flushing{h, b}), b.close, nil
}

// buffer is a bufio.Writer flushed on a timer after the first write.
type buffer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	pending bool
	closed  bool
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		// After close (lines written while the process exits): unbuffered.
		n, err := b.w.Write(p)
		if err == nil {
			err = b.w.Flush()
		}
		return n, err
	}
	n, err := b.w.Write(p)
	if !b.pending {
		b.pending = true
		time.AfterFunc(FlushInterval, b.flush)
	}
	return n, err
}

func (b *buffer) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = false
	b.w.Flush()
}

func (b *buffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.w.Flush()
}

// flushing flushes the buffer after every record at warning level or above.
type flushing struct {
	slog.Handler
	b *buffer
}

func (h flushing) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.flush()
	}
	return err
}

func (h flushing) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushing{h.Handler.WithAttrs(attrs), h.b}
}

func (h flushing) WithGroup(name string) slog.Handler {
	return flushing{h.Handler.WithGroup(name), h.b}
}
