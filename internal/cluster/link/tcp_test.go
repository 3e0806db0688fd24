package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
)

// The holder reads until the visitor's half-close, then answers and
// half-closes in turn: both directions' EOFs cross the link.
func TestTCPEchoHalfClose(t *testing.T) {
	remote := make(chan net.Addr, 1)
	h := newHolder(nil)
	h.tcp = func(c net.Conn) error {
		remote <- c.RemoteAddr()
		in, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		c.Write(bytes.ToUpper(in))
		return c.(interface{ CloseWrite() error }).CloseWrite()
	}
	srv, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	visitor := netip.MustParseAddrPort("[2001:db8::7]:40000")
	c, err := d.DialTCP(context.Background(), addr, 7000, 1, visitor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte("abc"), 300000)
	go func() {
		c.Write(payload)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, bytes.ToUpper(payload)) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	if a := (<-remote).String(); a != visitor.String() {
		t.Fatalf("holder's RemoteAddr %s, want %s", a, visitor)
	}
	if h.tcpIn[0] != visitor {
		t.Fatalf("visitor %v", h.tcpIn[0])
	}
	if st := srv.Stats(); st.TCPIn != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTCPStaleAndRefused(t *testing.T) {
	h := newHolder(nil)
	h.tcp = func(c net.Conn) error { return nil }
	_, addr := startServer(t, testSecret, h, nil)
	d := newDialer(t, testSecret)
	v := netip.MustParseAddrPort("192.0.2.1:1234")
	if _, err := d.DialTCP(context.Background(), addr, 7000, 5, v); !errors.Is(err, ErrStale) {
		t.Fatalf("stale generation: %v", err)
	}
	_, err := d.DialTCP(context.Background(), addr, 7001, 1, v)
	var re *RefusedError
	if !errors.As(err, &re) || re.Msg != "no tunnel on that port" {
		t.Fatalf("refused: %v", err)
	}
	if _, err := d.DialTCP(context.Background(), addr, 70000, 1, v); err == nil {
		t.Fatal("port out of range accepted")
	}
	if st := d.Stats(); st.StaleOut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A context that ends while the holder has not answered ends DialTCP.
func TestTCPDialContext(t *testing.T) {
	release := make(chan struct{})
	h := newHolder(nil)
	h.tcp = func(c net.Conn) error { return nil }
	blocking := &blockingTCP{holder: h, release: release, entered: make(chan struct{}, 1)}
	_, addr := startServer(t, testSecret, blocking, nil)
	d := newDialer(t, testSecret)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := d.DialTCP(ctx, addr, 7000, 1, netip.MustParseAddrPort("192.0.2.1:1"))
		errc <- err
	}()
	<-blocking.entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("DialTCP after cancel: %v", err)
	}
	close(release)
}

type blockingTCP struct {
	*holder
	release chan struct{}
	entered chan struct{}
}

func (b *blockingTCP) ServeForwardedTCP(c net.Conn, port int, gen uint64, visitor netip.AddrPort) error {
	b.entered <- struct{}{}
	<-b.release
	return ErrStale
}
