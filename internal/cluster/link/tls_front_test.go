package link

import (
	"net/http"
	"net/http/httptest"
)

func newTLSFront(d *Dialer, addr string) *httptest.Server {
	return httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.ForwardHTTP(w, r, addr, "app.example.test", 1)
	}))
}
