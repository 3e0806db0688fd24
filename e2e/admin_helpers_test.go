package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// adminScrape is one parsed /metrics answer.
type adminScrape map[string]*dto.MetricFamily

// scrape fetches addr's /metrics and parses it with the Prometheus text
// parser; a malformed exposition fails the test.
func adminScrapeMetrics(t *testing.T, addr string) adminScrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// labelsKey renders a metric's labels as `a="x",b="y"` in name order.
func adminLabelsKey(m *dto.Metric) string {
	ls := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	sort.Strings(ls)
	return strings.Join(ls, ",")
}

// find returns the series of family name whose labels are exactly
// labels (name, value pairs), or nil.
func (s adminScrape) find(name string, labels ...string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		ok := true
		for _, l := range m.GetLabel() {
			if v, has := want[l.GetName()]; !has || v != l.GetValue() {
				ok = false
			}
		}
		if ok {
			return m
		}
	}
	return nil
}

// value is a counter's or gauge's value (a histogram's sample count);
// a missing series fails the test.
func (s adminScrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.find(name, labels...)
	if m == nil {
		t.Fatalf("/metrics has no series %s%v", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("series %s%v has no value", name, labels)
	return 0
}

// adminJSONFamily mirrors internal/metrics.Family as a client reads it.
type adminJSONFamily struct {
	Name    string `json:"name"`
	Help    string `json:"help"`
	Type    string `json:"type"`
	Metrics []struct {
		Labels  map[string]string  `json:"labels"`
		Value   *float64           `json:"value"`
		Count   *uint64            `json:"count"`
		Sum     *float64           `json:"sum"`
		Buckets map[string]float64 `json:"buckets"`
	} `json:"metrics"`
}

func adminJSONMetrics(t *testing.T, addr string) map[string]adminJSONFamily {
	t.Helper()
	code, h, body := adminDo(t, "GET", addr, "/api/metrics", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("/api/metrics: %d %q\n%s", code, h.Get("Content-Type"), body)
	}
	var doc struct {
		Families []adminJSONFamily `json:"families"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/api/metrics: %v\n%s", err, body)
	}
	out := map[string]adminJSONFamily{}
	for i, f := range doc.Families {
		if i > 0 && doc.Families[i-1].Name >= f.Name {
			t.Errorf("/api/metrics families not sorted by name: %s before %s", doc.Families[i-1].Name, f.Name)
		}
		out[f.Name] = f
	}
	return out
}

// adminDo sends a request to the admin listener, with "Authorization:
// Bearer token" when token is not empty.
func adminDo(t *testing.T, method, addr, path, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// adminSession is a session as GET /api/sessions lists it.
type adminSession struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Auth      string    `json:"auth"`
	Remote    string    `json:"remote_addr"`
	Since     time.Time `json:"since"`
	LatencyMS float64   `json:"latency_ms"`
	Requests  int64     `json:"requests"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
	Streams   int64     `json:"open_streams"`
	Tunnels   []struct {
		ID       string    `json:"id"`
		Kind     string    `json:"kind"`
		Name     string    `json:"name"`
		URL      string    `json:"url"`
		Since    time.Time `json:"since"`
		Requests int64     `json:"requests"`
		BytesIn  int64     `json:"bytes_in"`
		BytesOut int64     `json:"bytes_out"`
	} `json:"tunnels"`
}

func adminSessions(t *testing.T, addr, token, query string) []adminSession {
	t.Helper()
	code, _, body := adminDo(t, "GET", addr, "/api/sessions"+query, token)
	if code != 200 {
		t.Fatalf("GET /api/sessions%s: %d %s", query, code, body)
	}
	var doc struct {
		Sessions []adminSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/api/sessions: %v\n%s", err, body)
	}
	return doc.Sessions
}

// sessionOf finds the session serving publicURL.
func adminSessionOf(t *testing.T, list []adminSession, publicURL string) adminSession {
	t.Helper()
	for _, s := range list {
		for _, tn := range s.Tunnels {
			if tn.URL == publicURL {
				return s
			}
		}
	}
	t.Fatalf("no session serves %s in %+v", publicURL, list)
	return adminSession{}
}

// adminCLI runs `porthole admin sessions ARGS` with env added to the
// environment and returns stdout, stderr and the exit code.
func adminCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runPortholeEnv(t, env, append([]string{"admin", "sessions"}, args...)...)
}

// adminApp is the local app behind the tunnels: "/" answers 200, "/missing"
// 404, "/boom" 500, "/moved" 302, "/big?n=N" N bytes, "/upload" counts the
// body it reads, and "/slow" waits until release is closed.
type adminApp struct {
	port    string
	release chan struct{}
	once    sync.Once
	slowIn  chan struct{}
}

func startAdminApp(t *testing.T) *adminApp {
	t.Helper()
	a := &adminApp{release: make(chan struct{}), slowIn: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "admin app") })
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/", http.StatusFound) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(bytes.Repeat([]byte("o"), n))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		a.slowIn <- struct{}{}
		select {
		case <-a.release:
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "slow done")
	})
	a.port = portOf(serveApp(t, &http.Server{Handler: mux}))
	t.Cleanup(a.releaseSlow)
	return a
}

func (a *adminApp) releaseSlow() { a.once.Do(func() { close(a.release) }) }

// adminSend sends method url through the server's public listener with
// body (none when empty) and returns status and response body.
func adminSend(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminProxy is a TCP proxy (to a database, or to a server's tunnel
// listener) that a test can cut: every open connection is closed, and new
// ones are closed at once (cut) or held without an answer (stall), until
// the test restores the path.
type adminProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   adminProxyMode
	conns  map[net.Conn]struct{}
}

type adminProxyMode int

const (
	proxyOpen adminProxyMode = iota
	proxyCut
	proxyStall
)

func startAdminProxy(t *testing.T, target string) *adminProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &adminProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.set(proxyCut)
	})
	return p
}

func (p *adminProxy) addr() string { return p.ln.Addr().String() }

func (p *adminProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		switch p.mode {
		case proxyCut:
			c.Close()
		case proxyStall:
			p.conns[c] = struct{}{} // closed when the mode changes
		default:
			go p.pipe(c)
		}
		p.mu.Unlock()
	}
}

func (p *adminProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.mode != proxyOpen {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// set changes the mode; every connection open so far is closed.
func (p *adminProxy) set(m adminProxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// adminLabelPairs returns m's labels as name, value pairs for find.
func adminLabelPairs(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName(), l.GetValue())
	}
	return out
}
