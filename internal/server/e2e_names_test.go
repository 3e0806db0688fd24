package server_test

import (
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/tunneltest"
)

// bindOnce starts a client for one tunnel and returns its URL, or the
// error it stopped with.
func bindOnce(t *testing.T, srv *tunneltest.Server, subdomain string) (string, error) {
	t.Helper()
	app := startApp(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	spec := tunneltest.HTTP("web", app.URL)
	spec.Config.Subdomain = subdomain
	c := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec)
	deadline := time.After(15 * time.Second)
	for {
		for _, e := range c.Events() {
			if e.Kind == client.EventForwarding {
				return e.Tunnel.URL, nil
			}
		}
		select {
		case <-c.Done():
			return "", c.Err()
		case <-deadline:
			t.Fatal("the client neither bound nor stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestSubdomainStrategies(t *testing.T) {
	t.Run("uuid", func(t *testing.T) {
		srv := tunneltest.StartServer(t, func(c *server.Config) { c.Subdomains.Strategy = "uuid" })
		url, err := bindOnce(t, srv, "")
		if err != nil || !regexp.MustCompile(`^http://[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.localhost:\d+$`).MatchString(url) {
			t.Fatalf("uuid strategy: %q %v", url, err)
		}
	})
	t.Run("user", func(t *testing.T) {
		srv := tunneltest.StartServer(t, func(c *server.Config) { c.Subdomains.Strategy = "user" })
		_, err := bindOnce(t, srv, "")
		var fe *client.FinalError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--subdomain") {
			t.Fatalf("user strategy without a subdomain: %v, want a final error asking for --subdomain", err)
		}
		if url, err := bindOnce(t, srv, "chosen"); err != nil || !strings.HasPrefix(url, "http://chosen.localhost:") {
			t.Fatalf("user strategy with a subdomain: %q %v", url, err)
		}
	})
}

func TestReservedListIsConfigurable(t *testing.T) {
	srv := tunneltest.StartServer(t, func(c *server.Config) { c.Subdomains.Reserved = []string{"billing", "ops"} })
	for _, name := range []string{"billing", "ops"} {
		if _, err := bindOnce(t, srv, name); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%s: %v, want reserved", name, err)
		}
	}
	// The configured list replaces the default one.
	if url, err := bindOnce(t, srv, "www"); err != nil || !strings.HasPrefix(url, "http://www.localhost:") {
		t.Errorf("www with a custom reserved list: %q %v", url, err)
	}
}

func TestPublicPortInURLs(t *testing.T) {
	for _, tc := range []struct {
		port int
		want *regexp.Regexp
	}{
		{80, regexp.MustCompile(`^http://named\.example\.test$`)},
		{8000, regexp.MustCompile(`^http://named\.example\.test:8000$`)},
	} {
		srv := tunneltest.StartServer(t, func(c *server.Config) {
			c.Domain = "example.test"
			c.PublicPort = tc.port
		})
		url, err := bindOnce(t, srv, "named")
		if err != nil || !tc.want.MatchString(url) {
			t.Errorf("public port %d: URL %q %v", tc.port, url, err)
		}
	}
}
