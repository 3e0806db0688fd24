package inspect

import (
	"bufio"
	"encoding/json"
	"github.com/porthole/porthole/internal/metrics"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// recordingProxy is a tunnel's HTTP path in miniature: a reverse proxy to
// a real local app, recorded into the store (package client does the same
// with its capture hook).
type recordingProxy struct {
	s     *Store
	proxy *httputil.ReverseProxy
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := p.s.Begin("web", r, r.RemoteAddr)
	body, _ := io.ReadAll(r.Body)
	x.WriteRequestBody(body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	rec := httptest.NewRecorder()
	p.proxy.ServeHTTP(rec, r)
	x.SetResponse(rec.Code, rec.Header())
	x.WriteResponseBody(rec.Body.Bytes())
	x.Finish(nil)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func (p *recordingProxy) ReplayHandler(tunnel string) (http.Handler, bool) {
	return p, tunnel == "web"
}

type apiEnv struct {
	store  *Store
	api    *httptest.Server
	public *httptest.Server
	seen   chan *http.Request
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	e := &apiEnv{store: newTestStore(t, 10, 1<<10), seen: make(chan *http.Request, 10)}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		e.seen <- r
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"echo":` + strconvQuote(string(b)) + `}`))
	}))
	t.Cleanup(app.Close)
	target, _ := url.Parse(app.URL)
	rp := &recordingProxy{s: e.store, proxy: &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}}
	e.public = httptest.NewServer(rp)
	t.Cleanup(e.public.Close)
	m := NewMetrics(func() Snapshot {
		return Snapshot{State: "online", Server: "ws://127.0.0.1:1", Latency: 2 * time.Millisecond, Tunnels: []TunnelSnapshot{{Name: "web", Proto: "http", Bound: true, Requests: 3}}}
	}, e.store)
	e.api = httptest.NewServer(NewHandler(Options{Store: e.store, Metrics: m, Replayer: rp, ListenHost: "127.0.0.1"}))
	t.Cleanup(e.api.Close)
	return e
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func (e *apiEnv) visit(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.public.URL+path, strings.NewReader(body))
	req.Header.Set("X-Test", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-e.seen
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode
}

func TestAPIListDetailReplay(t *testing.T) {
	e := newAPIEnv(t)
	e.visit(t, "POST", "/orders?x=1", `{"qty":2}`)

	var list RequestList
	getJSON(t, e.api.URL+"/api/requests", &list)
	if len(list.Requests) != 1 || list.Requests[0].Path != "/orders?x=1" || list.Requests[0].Status != 200 {
		t.Fatalf("list = %+v", list)
	}
	id := list.Requests[0].ID
	var d Detail
	if code := getJSON(t, e.api.URL+"/api/requests/"+itoa(id), &d); code != 200 {
		t.Fatalf("detail: %d", code)
	}
	if d.Request.Headers.Get("X-Test") != "1" || d.Response.Body.Kind != "json" {
		t.Errorf("detail = %+v", d)
	}

	// Replay as it was.
	res := postReplay(t, e.api.URL, id, `{}`, 200)
	got := <-e.seen
	if got.Method != "POST" || got.URL.RequestURI() != "/orders?x=1" || got.Header.Get("X-Test") != "1" {
		t.Errorf("replay reached the app as %s %s %v", got.Method, got.URL, got.Header)
	}
	if b, _ := io.ReadAll(got.Body); string(b) != `{"qty":2}` {
		t.Errorf("replayed body = %q", b)
	}
	var rd Detail
	getJSON(t, e.api.URL+"/api/requests/"+itoa(res.ID), &rd)
	if rd.ReplayOf != id {
		t.Errorf("replay_of = %d, want %d", rd.ReplayOf, id)
	}

	// Replay edited.
	postReplay(t, e.api.URL, id, `{"method":"put","path":"/orders/7","headers":{"X-Edited":["yes"]},"body":"changed"}`, 200)
	got = <-e.seen
	b, _ := io.ReadAll(got.Body)
	if got.Method != "PUT" || got.URL.Path != "/orders/7" || got.Header.Get("X-Edited") != "yes" || got.Header.Get("X-Test") != "" || string(b) != "changed" {
		t.Errorf("edited replay reached the app as %s %s %v %q", got.Method, got.URL, got.Header, b)
	}
	if st := e.store.Stats(); st.Replays != 2 {
		t.Errorf("replays = %d", st.Replays)
	}

	var errDoc map[string]string
	if code := getJSON(t, e.api.URL+"/api/requests/999", &errDoc); code != 404 || errDoc["error"] == "" {
		t.Errorf("missing exchange: %d %v", code, errDoc)
	}
	postReplay(t, e.api.URL, id, `{"path":"no-slash"}`, 400)
}

func TestReplayRefusesCutBody(t *testing.T) {
	e := newAPIEnv(t)
	e.visit(t, "POST", "/big", strings.Repeat("z", 2<<10))
	id := e.store.Recent(1)[0].ID
	postReplay(t, e.api.URL, id, `{}`, http.StatusConflict)
	postReplay(t, e.api.URL, id, `{"body":"small"}`, 200)
	<-e.seen
}

func postReplay(t *testing.T, base string, id uint64, body string, want int) ReplayResult {
	t.Helper()
	resp, err := http.Post(base+"/api/requests/"+itoa(id)+"/replay", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res ReplayResult
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &res)
	if resp.StatusCode != want {
		t.Fatalf("replay %s: %d %s, want %d", body, resp.StatusCode, raw, want)
	}
	return res
}

func TestGuard(t *testing.T) {
	e := newAPIEnv(t)
	e.visit(t, "GET", "/", "")
	id := itoa(e.store.Recent(1)[0].ID)
	do := func(method, path, host, origin, ctype string) int {
		req, _ := http.NewRequest(method, e.api.URL+path, strings.NewReader("{}"))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := []struct {
		name                             string
		method, path, host, origin, ctyp string
		want                             int
	}{
		{"page", "GET", "/", "", "", "", 200},
		{"localhost name", "GET", "/api/requests", "localhost:4040", "", "", 200},
		{"rebound name", "GET", "/api/requests", "evil.example:4040", "", "", 403},
		{"cross-site form post", "POST", "/api/requests/" + id + "/replay", "", "", "text/plain", 415},
		{"cross-origin json", "POST", "/api/requests/" + id + "/replay", "", "http://evil.example", "application/json", 403},
		{"cross-origin clear", "DELETE", "/api/requests", "", "http://evil.example", "", 403},
	}
	for _, c := range cases {
		if got := do(c.method, c.path, c.host, c.origin, c.ctyp); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if len(e.seen) != 0 {
		t.Error("a refused replay reached the app")
	}
}

func TestEventsStream(t *testing.T) {
	e := newAPIEnv(t)
	e.visit(t, "GET", "/first", "")
	resp, err := http.Get(e.api.URL + "/api/requests/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan [2]string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				events <- [2]string{name, strings.TrimPrefix(line, "data: ")}
			}
		}
		close(events)
	}()
	next := func() [2]string {
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return [2]string{}
	}
	if ev := next(); ev[0] != "reset" || !strings.Contains(ev[1], `"/first"`) {
		t.Fatalf("first event %v", ev)
	}
	e.visit(t, "GET", "/second", "")
	for {
		ev := next()
		if ev[0] == "exchange" && strings.Contains(ev[1], `"/second"`) && strings.Contains(ev[1], `"done":true`) {
			break
		}
	}
}

func TestMetricsTextAndJSON(t *testing.T) {
	e := newAPIEnv(t)
	e.visit(t, "GET", "/m", "")
	resp, err := http.Get(e.api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"porthole_client_state", "porthole_client_latency_seconds", "porthole_client_tunnel_requests_total",
		"porthole_client_http_request_duration_seconds", "porthole_client_http_responses_total", "porthole_client_inspect_exchanges"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v := fams["porthole_client_tunnel_requests_total"].GetMetric()[0].GetCounter().GetValue(); v != 3 {
		t.Errorf("requests_total = %v", v)
	}
	var doc metrics.Document
	getJSON(t, e.api.URL+"/api/metrics", &doc)
	found := false
	for _, f := range doc.Families {
		if f.Name == "porthole_client_http_responses_total" {
			found = len(f.Metrics) == 1 && *f.Metrics[0].Value == 1 && f.Metrics[0].Labels["code"] == "2xx"
		}
	}
	if !found {
		t.Error("/api/metrics lacks the 2xx response count")
	}
}

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }
