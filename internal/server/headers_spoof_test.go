package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/tunneltest"
)

// spoofed is the address a visitor claims in every header it can.
const spoofed = "10.66.66.66"

// spoofHeaders are the address headers a visitor may send: the usual
// names, other spellings of them, and names that some app stacks read as
// the same header (CGI turns "X_Real_IP" into HTTP_X_REAL_IP, as it does
// "X-Real-IP").
var spoofHeaders = []string{
	"X-Real-IP", "True-Client-IP", "Forwarded", "X-Forwarded-For", "CF-Connecting-IP",
	"X-Client-IP", "X-Cluster-Client-IP", "Fastly-Client-IP", "Client-IP", "X-Originating-IP", "Forwarded-For", "X-Forwarded",
	"x-real-ip", "X_Real_IP", "X_Forwarded_For", "True_Client_IP", "X-Forwarded_For", "CF_Connecting_IP", "FORWARDED",
}

// rawRequest sends req (a request head, lines joined with \r\n) to the
// server's public listener and returns the status.
func rawRequest(t *testing.T, srv *tunneltest.Server, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.PublicAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// spoofRequest is a request for host with every spoofed header, some
// twice.
func spoofRequest(host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET /headers HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", host)
	for _, h := range spoofHeaders {
		v := spoofed
		if strings.EqualFold(strings.ReplaceAll(h, "_", "-"), "Forwarded") {
			v = "for=" + spoofed + ";proto=https"
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h, v)
	}
	fmt.Fprintf(&b, "X-Forwarded-For: %s, 10.0.0.1\r\nX-Real-IP: %s\r\n\r\n", spoofed, spoofed)
	return b.String()
}

// noSpoofedValue fails if any header that reached the app carries the
// visitor's claimed address.
func noSpoofedValue(t *testing.T, h http.Header) {
	t.Helper()
	for name, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, spoofed) {
				t.Errorf("the app got the visitor's claim in %s: %q", name, v)
			}
		}
	}
}

// TestSpoofedAddressHeaders: a visitor that claims another address in
// every header that names one gets to the app only what the server set
// from the TCP connection: X-Real-Ip, X-Forwarded-For (one value) and
// Forwarded for 127.0.0.1, and none of its own values.
func TestSpoofedAddressHeaders(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := &atkApp{}
	hs := startApp(t, app.ServeHTTP)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", hs.URL))
	u, _ := url.Parse(c.WaitURL(t, "web"))
	if st := rawRequest(t, srv, spoofRequest(u.Host)); st != 200 {
		t.Fatalf("status %d", st)
	}
	h := app.headers()
	noSpoofedValue(t, h)
	for name, want := range map[string][]string{
		"X-Real-Ip":       {"127.0.0.1"},
		"X-Forwarded-For": {"127.0.0.1"},
		"Forwarded":       {fmt.Sprintf("for=127.0.0.1;host=%q;proto=http", u.Host)},
	} {
		if got := h.Values(name); !slices.Equal(got, want) {
			t.Errorf("%s at the app: %q, want %q", name, got, want)
		}
	}
	for name := range h {
		norm := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.Contains(name, "_") && (strings.Contains(norm, "ip") || strings.Contains(norm, "forward")) {
			t.Errorf("the app got %s, which stacks that map _ to - read as an address header", name)
		}
	}
	for _, name := range []string{"True-Client-Ip", "Cf-Connecting-Ip", "X-Client-Ip", "X-Cluster-Client-Ip", "Fastly-Client-Ip", "Client-Ip", "X-Originating-Ip", "Forwarded-For", "X-Forwarded"} {
		if v := h.Values(name); len(v) > 0 {
			t.Errorf("%s reached the app: %q", name, v)
		}
	}

	// An IPv6 visitor (through the public handler with that address):
	// RFC 7239 quotes and brackets it.
	w := serveFrom(srv, "http://"+u.Host+"/headers", "[2001:db8::5]:4000", "")
	if w.Code != 200 {
		t.Fatalf("IPv6 visitor: %d", w.Code)
	}
	h = app.headers()
	if f := h.Get("Forwarded"); !strings.HasPrefix(f, `for="[2001:db8::5]";`) || h.Get("X-Real-Ip") != "2001:db8::5" || h.Get("X-Forwarded-For") != "2001:db8::5" {
		t.Errorf("IPv6 visitor: Forwarded %q, X-Real-Ip %q, X-Forwarded-For %q", f, h.Get("X-Real-Ip"), h.Get("X-Forwarded-For"))
	}
}

// TestHeaderRulesSetAddressHeaders: the tunnel's own request header
// rules come after the server's, so they can still set or replace the
// address headers (an app behind another proxy that expects them).
func TestHeaderRulesSetAddressHeaders(t *testing.T) {
	srv := tunneltest.StartServer(t)
	app := &atkApp{}
	hs := startApp(t, app.ServeHTTP)
	spec := tunneltest.HTTP("web", hs.URL)
	spec.Config.RequestHeaderRemove = []string{"X-Real-IP", "Forwarded"}
	spec.Config.RequestHeaderAdd = []string{"X-Real-IP: 203.0.113.7", "True-Client-IP: 203.0.113.8", "Forwarded: for=203.0.113.9"}
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	u, _ := url.Parse(c.WaitURL(t, "web"))
	if st := rawRequest(t, srv, spoofRequest(u.Host)); st != 200 {
		t.Fatalf("status %d", st)
	}
	h := app.headers()
	noSpoofedValue(t, h)
	for name, want := range map[string][]string{
		"X-Real-Ip":       {"203.0.113.7"},
		"True-Client-Ip":  {"203.0.113.8"},
		"Forwarded":       {"for=203.0.113.9"},
		"X-Forwarded-For": {"127.0.0.1"},
	} {
		if got := h.Values(name); !slices.Equal(got, want) {
			t.Errorf("%s at the app: %q, want %q", name, got, want)
		}
	}
}
