package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a goroutine-safe bytes.Buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestInfoLinesAreBufferedThenFlushed(t *testing.T) {
	var out syncBuf
	log, closeLog, err := New(&out, "text", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	log.Info("request", "status", 200)
	if out.String() != "" {
		t.Fatalf("an info line was written at once: %q", out.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "msg=request status=200") {
		if time.Now().After(deadline) {
			t.Fatalf("the line never reached the output: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWarningFlushesEverything(t *testing.T) {
	var out syncBuf
	log, closeLog, err := New(&out, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	log.With("side", "server").Info("first")
	log.Warn("second")
	s := out.String()
	if !strings.Contains(s, `"msg":"first"`) || !strings.Contains(s, `"msg":"second"`) || !strings.Contains(s, `"side":"server"`) {
		t.Fatalf("a warning did not flush the lines before it: %q", s)
	}
}

func TestCloseFlushesAndLaterLinesPassThrough(t *testing.T) {
	var out syncBuf
	log, closeLog, err := New(&out, "text", slog.LevelDebug)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("before close")
	closeLog()
	if !strings.Contains(out.String(), "before close") {
		t.Fatalf("close did not flush: %q", out.String())
	}
	log.Info("after close")
	if !strings.Contains(out.String(), "after close") {
		t.Fatalf("a line after close was held back: %q", out.String())
	}
}

func TestBadFormat(t *testing.T) {
	if _, _, err := New(&syncBuf{}, "xml", slog.LevelInfo); err == nil || !strings.Contains(err.Error(), "text or json") {
		t.Fatalf("err = %v", err)
	}
}
