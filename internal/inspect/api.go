package inspect

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed web
var webFiles embed.FS

// Replayer gives the handler that a visitor's request on a tunnel goes
// through, so that a replay reaches the local app exactly as the original
// did (same Host rewriting and forwarding headers) and is recorded and
// counted like any other request.
type Replayer interface {
	ReplayHandler(tunnel string) (http.Handler, bool)
}

// Options are the API's collaborators.
type Options struct {
	Store   *Store
	Metrics *Metrics
	// Replayer may be nil: replays then answer 501.
	Replayer Replayer
	// Status serves what this package does not: /api/status and the rest
	// of package client's API.
	Status http.Handler
	// ListenHost is the host part of the address the API listens on: only
	// Host headers naming it or loopback are accepted (see guard). Empty
	// or unspecified (0.0.0.0, ::) means every interface, any name.
	ListenHost string
	Logger     *slog.Logger
	// ReplayTimeout bounds one replay; 0 means 60 s.
	ReplayTimeout time.Duration
}

// NewHandler returns the inspector's HTTP API and web page.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReplayTimeout == 0 {
		o.ReplayTimeout = 60 * time.Second
	}
	a := &api{Options: o}
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(web)
	// Bodies are shown as text, never as markup, but a strict policy makes
	// sure no recorded content can ever load or run anything.
	static := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	mux.Handle("GET /{$}", static)
	mux.Handle("GET /static/", http.StripPrefix("/static", static))
	mux.HandleFunc("GET /api/requests", a.list)
	mux.HandleFunc("DELETE /api/requests", a.clear)
	mux.HandleFunc("GET /api/requests/events", a.events)
	mux.HandleFunc("GET /api/requests/{id}", a.detail)
	mux.HandleFunc("POST /api/requests/{id}/replay", a.replay)
	if o.Metrics != nil {
		mux.Handle("GET /api/metrics", o.Metrics.JSONHandler())
		mux.Handle("GET /metrics", o.Metrics.PrometheusHandler())
	}
	if o.Status != nil {
		mux.Handle("/api/", o.Status)
	}
	return guard(o.ListenHost, mux)
}

type api struct{ Options }

// RequestList is the /api/requests document.
type RequestList struct {
	Requests []Summary `json:"requests"`
	Stats    Stats     `json:"stats"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	n := a.Store.cfg.Capacity
	if v := r.URL.Query().Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive number")
			return
		}
		n = min(n, l)
	}
	writeJSON(w, http.StatusOK, RequestList{Requests: a.Store.Recent(n), Stats: a.Store.Stats()})
}

func (a *api) clear(w http.ResponseWriter, r *http.Request) {
	a.Store.Clear()
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) detail(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "request id must be a number")
		return
	}
	d, ok := a.Store.Detail(id)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("request %d is not kept (the inspector holds the last %d)", id, a.Store.cfg.Capacity))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// events streams changes to the request list as server-sent events: first
// a "reset" event with every kept exchange, then one "exchange" event per
// new or updated exchange. A reader that falls behind skips intermediate
// states of an exchange, never the latest one.
func (a *api) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	var since uint64
	for {
		changed, reset, now, wake := a.Store.Changes(since)
		if reset {
			if changed == nil {
				changed = []Summary{}
			}
			sendEvent(w, "reset", map[string]any{"capacity": a.Store.cfg.Capacity, "requests": changed})
		} else {
			for _, s := range changed {
				sendEvent(w, "exchange", s)
			}
		}
		since = now
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			// A comment line keeps proxies and the browser from timing the
			// stream out while nothing happens.
			io.WriteString(w, ": keep-alive\n\n")
			continue
		case <-wake:
		}
		// Under load changes come in bursts: gather them for a moment
		// instead of sending one event per body chunk's wake-up.
		select {
		case <-r.Context().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sendEvent(w io.Writer, name string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}

// ReplayRequest edits a request before it is sent again. Every field is
// optional; an absent one keeps the original's value.
type ReplayRequest struct {
	Method  string      `json:"method,omitempty"`
	Path    string      `json:"path,omitempty"`
	Headers http.Header `json:"headers,omitempty"`
	// Body replaces the body with this text; BodyBase64 with these bytes.
	Body       *string `json:"body,omitempty"`
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// ReplayResult names the exchange a replay created.
type ReplayResult struct {
	ID     uint64 `json:"id"`
	Status int    `json:"status"`
}

func (a *api) replay(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "request id must be a number")
		return
	}
	x := a.Store.get(id)
	if x == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("request %d is not kept any more", id))
		return
	}
	var edit ReplayRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, MaxBodyLimit+1<<20)).Decode(&edit); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "replay: "+err.Error())
		return
	}
	if a.Replayer == nil {
		writeError(w, http.StatusNotImplemented, "replay is not available")
		return
	}
	h, ok := a.Replayer.ReplayHandler(x.tunnel)
	if !ok {
		writeError(w, http.StatusConflict, fmt.Sprintf("tunnel %q cannot replay requests", x.tunnel))
		return
	}
	req, status, msg := a.buildReplay(r.Context(), x, &edit)
	if req == nil {
		writeError(w, status, msg)
		return
	}
	ctx, mark := withReplay(req.Context(), id)
	ctx, cancel := context.WithTimeout(ctx, a.ReplayTimeout)
	defer cancel()
	dw := &discardWriter{header: http.Header{}}
	h.ServeHTTP(dw, req.WithContext(ctx))
	a.Logger.Info("replayed request", "of", id, "id", mark.id.Load(), "method", req.Method, "path", req.URL.RequestURI(), "status", dw.statusOrOK())
	writeJSON(w, http.StatusOK, ReplayResult{ID: mark.id.Load(), Status: dw.statusOrOK()})
}

// buildReplay makes the request to send again from x and the edits. It
// returns nil with a status and message when that cannot be done
// faithfully.
func (a *api) buildReplay(ctx context.Context, x *Exchange, e *ReplayRequest) (*http.Request, int, string) {
	method := x.method
	if e.Method != "" {
		method = strings.ToUpper(strings.TrimSpace(e.Method))
	}
	path := x.uri
	if e.Path != "" {
		path = strings.TrimSpace(e.Path)
	}
	if !strings.HasPrefix(path, "/") {
		return nil, http.StatusBadRequest, "path must start with /"
	}
	var body []byte
	switch {
	case e.Body != nil:
		body = []byte(*e.Body)
	case e.BodyBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*e.BodyBase64)
		if err != nil {
			return nil, http.StatusBadRequest, "body_base64: " + err.Error()
		}
		body = b
	default:
		x.mu.Lock()
		body = append([]byte(nil), x.reqBody.buf...)
		cut := x.reqBody.truncated() || x.gone
		limit := x.reqBody.limit
		x.mu.Unlock()
		if cut {
			return nil, http.StatusConflict, fmt.Sprintf("the original body was longer than the %s the inspector keeps; edit the request and give a body to replay it", ByteSize(limit))
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://replay"+path, bytes.NewReader(body))
	if err != nil {
		return nil, http.StatusBadRequest, "replay: " + err.Error()
	}
	hdr := x.reqHeader
	if e.Headers != nil {
		hdr = e.Headers
	}
	req.Header = hdr.Clone()
	req.Host = x.host
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.Header.Del("Host")
	// The body may have changed length; the one we send is whole.
	req.Header.Del("Content-Length")
	req.Header.Del("Transfer-Encoding")
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	req.RequestURI = path
	req.RemoteAddr = ReplayRemoteAddr
	return req, 0, ""
}

// ReplayRemoteAddr is the RemoteAddr of a replayed request, shown as its
// origin in the inspector.
const ReplayRemoteAddr = "inspector replay"

// discardWriter takes a replay's response: the recorder keeps what the
// person wants to see, the rest has nowhere to go.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.header }
func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 || d.status < 200 {
		d.status = code
	}
}
func (d *discardWriter) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(p), nil
}
func (d *discardWriter) statusOrOK() int {
	if d.status == 0 {
		return http.StatusOK
	}
	return d.status
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// guard protects an API that shows request bodies and sends requests to
// the local app from web pages the person happens to visit:
//
//   - DNS rebinding: a page on evil.example whose name later resolves to
//     127.0.0.1 talks to us as a same-origin page. Only loopback Host
//     headers (localhost, 127.0.0.1, [::1]) and the listen host itself are
//     served, unless the listener is on every interface (0.0.0.0, [::]).
//   - Cross-site requests: browsers send simple cross-origin POSTs without
//     asking first, so a request that changes anything must carry JSON (a
//     content type that forces a CORS preflight, which we never approve)
//     and, when the browser names an Origin, come from our own.
func guard(listenHost string, next http.Handler) http.Handler {
	listenHost = strings.Trim(listenHost, "[]")
	// Bound to every interface on purpose (":4040", "0.0.0.0:4040"):
	// reachable under any name.
	anyHost := listenHost == ""
	if ip := net.ParseIP(listenHost); ip != nil && ip.IsUnspecified() {
		anyHost = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if !anyHost && !isLoopbackHost(host) && !strings.EqualFold(host, listenHost) {
			writeError(w, http.StatusForbidden, "the inspector answers only to the address it listens on, localhost, 127.0.0.1 or [::1]")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
				writeError(w, http.StatusForbidden, "cross-origin request refused")
				return
			}
			if r.Method == http.MethodPost && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				writeError(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopbackHost(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
