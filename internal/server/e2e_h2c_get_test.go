package server_test

import (
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/porthole/porthole/internal/tunneltest"
)

// TestH2COnlyAppGetsHTTP2: with --upstream-protocol h2c, requests of
// every kind reach an app that speaks only cleartext HTTP/2 (a gRPC
// server's h2c listener) over HTTP/2: bodyless GETs took the client's
// HTTP/1.1 direct path and got a 502 from such an app.
func TestH2COnlyAppGetsHTTP2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	app := &http.Server{Protocols: p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.Proto)
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	srv := tunneltest.StartServer(t)
	spec := tunneltest.HTTP("h2only", "http://"+ln.Addr().String())
	spec.Config.UpstreamProtocol = "h2c"
	u := tunneltest.StartClient(t, tunneltest.ClientConfig(srv.TunnelURL()), spec).WaitURL(t, "h2only")
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPost} {
		req, _ := http.NewRequest(method, u+"/", nil)
		resp, err := srv.Visitor().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := method + " HTTP/2.0"
		if method == http.MethodHead {
			want = ""
		}
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("%s: %d %q, want 200 %q", method, resp.StatusCode, body, want)
		}
	}
}
