package link

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Shutdown lets a forwarded request in progress finish, and refuses new
// connections.
func TestShutdownDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := newHolder(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(testSecret, h, testLogger(t))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	f := startFront(t, newDialer(t, testSecret), l.Addr().String(), 1)
	got := make(chan string, 1)
	go func() {
		resp, err := client(t).Get(f.URL)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("listener still open")
	}
	close(release)
	if b := <-got; b != "finished" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
