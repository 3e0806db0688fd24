package server_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

var forwardingURL = regexp.MustCompile(`^http://[a-z]+-[a-z]+-[0-9]+\.localhost:([0-9]+)$`)

// startApp runs a local app for a tunnel to reach; it stops at cleanup.
func startApp(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	app := httptest.NewServer(h)
	t.Cleanup(app.Close)
	return app
}

// tunnel starts a server (with mods), an app and a client tunnel to it,
// and returns the server, the client and the public URL.
func tunnel(t *testing.T, h http.HandlerFunc, mods ...func(*server.Config)) (*tunneltest.Server, *tunneltest.Client, string) {
	t.Helper()
	srv := tunneltest.StartServer(t, mods...)
	app := startApp(t, h)
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), tunneltest.HTTP("web", app.URL))
	return srv, c, c.WaitURL(t, "web")
}

func TestTunnelServesApp(t *testing.T) {
	srv, c, url := tunnel(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app: %s %s", r.Method, r.URL.Path)
	})
	m := forwardingURL.FindStringSubmatch(url)
	_, port, _ := net.SplitHostPort(srv.PublicAddr())
	if m == nil || m[1] != port {
		t.Fatalf("public URL %q does not have the form http://adjective-noun-N.localhost:%s", url, port)
	}
	resp, body, err := srv.Get(url + "/some/path")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "hello from the app: GET /some/path" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	st := c.Status()
	if st.State != "online" || len(st.Tunnels) != 1 || st.Tunnels[0].URL != url || st.Tunnels[0].Requests != 1 {
		t.Fatalf("client status %+v", st)
	}
	// The admin listener answers health checks.
	resp, body, err = tunneltest.Get(http.DefaultClient, "http://"+srv.AdminAddr().String()+"/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v %q", resp, err, body)
	}
	if n, err := srv.Metric("porthole_tunnels"); err != nil || n != 1 {
		t.Fatalf("porthole_tunnels = %v, %v", n, err)
	}
}
