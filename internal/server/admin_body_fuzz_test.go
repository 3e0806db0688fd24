package server

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/store"
)

// countingBody serves n bytes cycling through pattern, counting what is
// read, without holding them.
type countingBody struct {
	pattern []byte
	n, read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.read >= b.n {
		return 0, io.EOF
	}
	k := min(len(p), b.n-b.read)
	for i := range k {
		p[i] = b.pattern[(b.read+i)%len(b.pattern)]
	}
	b.read += k
	return k, nil
}

// FuzzAdminAPIBody sends arbitrary request bodies (any content type, up
// to 8 MiB) with the admin token to every route of the admin listener of
// a real server on a real SQLite store. The admin API takes its input
// from the path and query only (users, keys, tokens, domains,
// revocations and limits are `porthole admin` commands on the store), so
// no handler may read more than 64 KiB of a body, answer 5xx, or panic.
func FuzzAdminAPIBody(f *testing.F) {
	cfg := DefaultConfig()
	cfg.DataDir = f.TempDir()
	cfg.AdminToken = "admin-secret-token"
	cfg.Metrics.Pprof = true
	st, err := store.Open(context.Background(), "", cfg.DataDir)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	if _, err := st.CreateUser(context.Background(), "alice"); err != nil {
		f.Fatal(err)
	}
	svc, err := auth.New(cfg.Auth, auth.Options{Store: st, DataDir: cfg.DataDir})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test",
		Auth: svc, Policy: auth.NewPolicy(cfg.Auth, auth.PolicyOptions{Store: st}), Ready: st.Ping})
	if err != nil {
		f.Fatal(err)
	}
	h := s.adminHandler()
	routes := []struct{ method, path string }{
		{"GET", "/api/sessions"},
		{"DELETE", "/api/sessions/abc"},
		{"POST", "/api/sessions/abc/kick"},
		{"GET", "/api/users/alice/usage"},
		{"GET", "/api/metrics"},
		{"GET", "/metrics"},
		{"GET", "/readyz"},
		{"GET", "/healthz"},
		{"POST", "/api/users"},
		{"PUT", "/api/limits/alice"},
		{"GET", "/debug/pprof/cmdline"},
	}
	f.Add(uint8(2), "application/json", []byte(`{"reason":"x"}`), uint32(14))
	f.Add(uint8(1), "application/x-www-form-urlencoded", []byte("reason=x&"), uint32(8<<20))
	f.Add(uint8(8), "application/json", []byte(`{"name":"bob","limits":{"max_tunnels":-1}}`), uint32(1<<20))
	f.Add(uint8(9), "multipart/form-data; boundary=x", []byte("--x\r\n"), uint32(3<<20))
	f.Add(uint8(0), "", []byte{0}, uint32(0))
	f.Fuzz(func(t *testing.T, route uint8, ctype string, pattern []byte, size uint32) {
		if len(pattern) == 0 {
			pattern = []byte{'{'}
		}
		rt := routes[int(route)%len(routes)]
		body := &countingBody{pattern: pattern, n: int(size % (8<<20 + 1))}
		r := httptest.NewRequest(rt.method, "http://admin.local"+rt.path, body)
		r.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
		if ctype != "" {
			r.Header["Content-Type"] = []string{ctype}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s with a %d-byte body: %d %s", rt.method, rt.path, body.n, w.Code, w.Body)
		}
		if body.read > 64<<10 {
			t.Fatalf("%s %s read %d bytes of its body", rt.method, rt.path, body.read)
		}
	})
}
