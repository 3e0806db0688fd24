package server

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzAdminAPI sends arbitrary requests (method, path, query, bearer
// token) to the admin listener's handler of a real server on a real
// SQLite store: no panic, never a 5xx, and nothing under /api/ but the
// public metrics answers 200 without the admin token.
func FuzzAdminAPI(f *testing.F) {
	cfg := DefaultConfig()
	cfg.DataDir = f.TempDir()
	cfg.NoAuth = true
	cfg.AdminToken = "admin-secret-token"
	s, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test"})
	if err != nil {
		f.Fatal(err)
	}
	h := s.adminHandler()
	f.Add("GET", "/api/sessions", "", "admin-secret-token")
	f.Add("POST", "/api/sessions/abc/kick", "reason=x", "admin-secret-token")
	f.Add("DELETE", "/api/sessions/%00", "", "admin-secret-token")
	f.Add("GET", "/api/users/al%2Fice/usage", "", "wrong")
	f.Add("GET", "/api/metrics", "", "")
	f.Add("GET", "/readyz", "", "")
	f.Add("GET", "/debug/pprof/", "seconds=1", "admin-secret-token")
	f.Add("PUT", "/api/sessions", strings.Repeat("a=b&", 100), "admin-secret-token ")
	f.Fuzz(func(t *testing.T, method, path, query, token string) {
		if !validMethod(method) || strings.HasPrefix(path, "/debug/pprof/profile") || strings.HasPrefix(path, "/debug/pprof/trace") {
			return // net/http refuses such methods before any handler; profiles take seconds
		}
		u := &url.URL{Path: "/" + strings.TrimPrefix(path, "/"), RawQuery: url.QueryEscape(query)}
		r := httptest.NewRequest(method, "http://admin.local"+u.RequestURI(), nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, u.RequestURI(), w.Code, w.Body)
		}
		if w.Code == 200 && strings.HasPrefix(r.URL.Path, "/api/") && r.URL.Path != "/api/metrics" && token != cfg.AdminToken {
			t.Fatalf("%s %s answered 200 with token %q", method, u.RequestURI(), token)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
