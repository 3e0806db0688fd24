package server_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/protocol"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// TestGoAwayFromClientRefused: go_away is the server's to send. A client
// that sends one is told so, with a final bad_request, and cut off; the
// server serves on.
func TestGoAwayFromClientRefused(t *testing.T) {
	srv := tunneltest.StartServer(t)
	for _, n := range []int{1, 500} {
		s := dialRaw(t, srv)
		s.hello(t)
		for range n {
			if err := s.w.Write(&protocol.GoAway{Reason: "fake", DeadlineMillis: 1}); err != nil {
				break
			}
		}
		var got *protocol.Error
		for {
			m, err := s.r.Read()
			if err != nil {
				break
			}
			if e, ok := m.(*protocol.Error); ok && got == nil {
				got = e
			}
		}
		if got == nil || got.Code != protocol.CodeBadRequest || !got.Final || !strings.Contains(got.Message, "unexpected go_away message from a client") {
			t.Fatalf("%d go_away from a client: got %+v, want a final bad_request naming go_away", n, got)
		}
	}
	stillServes(t, srv)
}

// TestLinkOutOfRange: a link number outside 0 to 15 in hello is refused,
// so one client cannot hold sessions without bound by numbering them.
func TestLinkOutOfRange(t *testing.T) {
	srv := tunneltest.StartServer(t)
	for _, link := range []int{-1, server.MaxLinks, 1 << 30} {
		s := dialRaw(t, srv)
		s.w.Write(&protocol.Hello{Version: protocol.Version, Link: link})
		_, err := protocol.Expect[*protocol.Welcome](s.r)
		var e *protocol.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeBadRequest || !e.Final || !strings.Contains(e.Message, "out of range") {
			t.Errorf("hello with link %d: %v, want a final bad_request", link, err)
		}
	}
	s := dialRaw(t, srv)
	s.w.Write(&protocol.Hello{Version: protocol.Version, Link: server.MaxLinks - 1})
	if _, err := protocol.Expect[*protocol.Welcome](s.r); err != nil {
		t.Errorf("hello with link %d: %v", server.MaxLinks-1, err)
	}
	stillServes(t, srv)
}

// TestGoAwayOldClient: a client from before go_away skips the frame as a
// type it does not know; it keeps its session until the shutdown notice,
// as before, and nothing else changes for it.
func TestGoAwayOldClient(t *testing.T) {
	srv := tunneltest.StartServer(t)
	s := dialRaw(t, srv)
	s.hello(t)
	if b, e := s.rawBind(t, protocol.Bind{ID: 1, Kind: "http", Subdomain: "old"}); b == nil {
		t.Fatalf("bind: %+v", e)
	}
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	// Read frames as a client that knows types up to health (0x0a) does:
	// anything newer is skipped, header and payload.
	var types []protocol.MsgType
	var notice protocol.Notice
	s.ctrl.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(s.ctrl, hdr[:]); err != nil {
			break
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(s.ctrl, payload); err != nil {
			break
		}
		typ := protocol.MsgType(hdr[0])
		if typ > protocol.TypeHealth {
			types = append(types, typ) // skipped by an old client
			continue
		}
		if typ == protocol.TypeNotice {
			m, err := protocol.NewReader(strings.NewReader(string(hdr[:]) + string(payload))).Read()
			if err != nil {
				t.Fatal(err)
			}
			notice = *m.(*protocol.Notice)
		}
	}
	<-stopped
	if len(types) != 1 || types[0] != protocol.TypeGoAway {
		t.Errorf("frames an old client skips: %v, want one go_away", types)
	}
	if notice.Kind != protocol.NoticeShutdown || notice.Final {
		t.Errorf("notice %+v, want the retryable shutdown notice an old client reconnects on", notice)
	}
}

// TestLinksOnOneServer: one client with two links to one server (two
// addresses of it) binds one name twice, as two links of one owner, not
// a takeover. Visitors are spread over both; losing one link loses no
// request; the client opens it again.
func TestLinksOnOneServer(t *testing.T) {
	srv := tunneltest.StartServer(t)
	proxy := tunneltest.NewProxy(t, srv.TunnelAddr().String())
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") })
	cfg := tunneltest.ClientConfig(srv.TunnelURL(), tunneltest.WSURL(proxy.Addr()))
	cfg.Links = 2
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = "twin"
	c := tunneltest.StartClient(t, cfg, spec)
	url := c.WaitURL(t, "web")
	bothUp := func() bool {
		ss := srv.Sessions()
		if len(ss) != 2 {
			return false
		}
		for _, s := range ss {
			if len(s.Tunnels) != 1 {
				return false
			}
		}
		return true
	}
	waitFor(t, "two sessions each serving the name", bothUp)
	waitFor(t, "both links online at the client", func() bool {
		st := c.Status()
		return len(st.Links) == 2 && st.Links[0].State == client.StateOnline && st.Links[1].State == client.StateOnline
	})
	forwarding := 0
	for _, e := range c.Events() {
		if e.Kind == client.EventForwarding {
			forwarding++
		}
	}
	if forwarding != 1 {
		t.Errorf("%d Forwarding events for one URL served by two links, want 1", forwarding)
	}
	for range 40 {
		if resp, body, err := srv.Get(url); err != nil || resp.StatusCode != 200 || body != "app" {
			t.Fatalf("visitor: %v %q %v", statusOf(resp), body, err)
		}
	}
	for _, s := range srv.Sessions() {
		if s.Requests < 10 {
			t.Errorf("session %s served %d of 40 requests: not spread over the links", s.ID, s.Requests)
		}
	}
	if srv.Logs.Contains("replaced by a newer session of the same client") {
		t.Error("the second link was taken for a reconnect")
	}
	proxy.Cut()
	for range 40 {
		if resp, body, err := srv.Get(url); err != nil || resp.StatusCode != 200 || body != "app" {
			t.Fatalf("visitor after one link was lost: %v %q %v", statusOf(resp), body, err)
		}
	}
	waitFor(t, "the lost link back", bothUp)
}

// rawBind binds on a raw session, skipping pings.
func (s *rawSession) rawBind(t *testing.T, b protocol.Bind) (*protocol.Bound, *protocol.Error) {
	t.Helper()
	if err := s.w.Write(&b); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.r.Read()
		if err != nil {
			t.Fatalf("bind: %v", err)
		}
		switch m := m.(type) {
		case *protocol.Bound:
			return m, nil
		case *protocol.Error:
			return nil, m
		}
	}
}
