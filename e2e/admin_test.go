package e2e

// The server's operator surface, tested with the built binary: /healthz
// and /readyz (also against a PostgreSQL database the test cuts off),
// /metrics parsed with the Prometheus text parser, the /api/metrics JSON
// snapshot, the admin JSON API with and without its token, kicking a
// session, a user's usage, and `porthole admin sessions list|kick`.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	dto "github.com/prometheus/client_model/go"

	"github.com/porthole/porthole/internal/limits"
)

const adminToken = "e2e-admin-token-7c1f0a9d3b"

const adminConfig = `
admin_token = "` + adminToken + `"

[auth]
# Refusals below come from one address; the throttle has its own test.
failed_auth_burst = 1000

[http]
shutdown_timeout = "15s"
`

// adminFamilies are the server's metric families and their types; every
// one must be in /metrics from the start, before any traffic.
var adminFamilies = map[string]dto.MetricType{
	"porthole_sessions":                                 dto.MetricType_GAUGE,
	"porthole_sessions_total":                           dto.MetricType_COUNTER,
	"porthole_tunnels":                                  dto.MetricType_GAUGE,
	"porthole_http_requests_total":                      dto.MetricType_COUNTER,
	"porthole_bytes_total":                              dto.MetricType_COUNTER,
	"porthole_streams":                                  dto.MetricType_GAUGE,
	"porthole_streams_total":                            dto.MetricType_COUNTER,
	"porthole_handshake_failures_total":                 dto.MetricType_COUNTER,
	"porthole_auth_failures_total":                      dto.MetricType_COUNTER,
	"porthole_tunnel_reclaims_total":                    dto.MetricType_COUNTER,
	"porthole_limit_hits_total":                         dto.MetricType_COUNTER,
	"porthole_names_held":                               dto.MetricType_GAUGE,
	"porthole_http_request_duration_seconds":            dto.MetricType_HISTOGRAM,
	"go_goroutines":                                     dto.MetricType_GAUGE,
	"process_resident_memory_bytes":                     dto.MetricType_GAUGE,
	"porthole_tls_certificate_reloads_total":            -1, // only with a certificate
	"porthole_tunnel_http_requests_total":               -1, // only with per_tunnel_labels
	"porthole_tls_acme_operations_total":                -1,
	"porthole_tls_on_demand_decisions_total":            -1,
	"porthole_tls_certificate_expiry_timestamp_seconds": -1,
}

// adminLabelSets are the label values each labelled family must show,
// counted or not, so that rate() and alerts work from the first scrape.
var adminLabelSets = map[string][]string{
	"porthole_http_requests_total": {`code="1xx"`, `code="2xx"`, `code="3xx"`, `code="4xx"`, `code="5xx"`, `code="other"`},
	"porthole_bytes_total":         {`direction="in"`, `direction="out"`},
	"porthole_auth_failures_total": {`reason="forbidden"`, `reason="rate_limited"`, `reason="unauthorized"`, `reason="unsupported_version"`},
}

func init() {
	for _, k := range limits.AllKinds {
		adminLabelSets["porthole_limit_hits_total"] = append(adminLabelSets["porthole_limit_hits_total"], `kind="`+string(k)+`"`)
	}
}

// checkAdminFamilies checks that every family a server always exports is
// there with its type and bounded labels, and that the conditional ones
// are there exactly when expected.
func checkAdminFamilies(t *testing.T, sc adminScrape, perTunnel, tls bool) {
	t.Helper()
	for name, typ := range adminFamilies {
		f := sc[name]
		want := typ >= 0 || (perTunnel && name == "porthole_tunnel_http_requests_total") || (tls && strings.HasPrefix(name, "porthole_tls_"))
		if !want {
			if f != nil {
				t.Errorf("/metrics has %s, which this server should not export", name)
			}
			continue
		}
		if f == nil {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if typ >= 0 && f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	for name, sets := range adminLabelSets {
		var got []string
		for _, m := range sc[name].GetMetric() {
			got = append(got, adminLabelsKey(m))
		}
		for _, s := range sets {
			if !containsString(got, s) {
				t.Errorf("%s lacks the series {%s}; has %v", name, s, got)
			}
		}
		if name != "porthole_auth_failures_total" && len(got) != len(sets) {
			// auth failures may grow a label per refusal code, a fixed set.
			t.Errorf("%s has series %v, want exactly %v", name, got, sets)
		}
	}
	h := sc.find("porthole_http_request_duration_seconds").GetHistogram()
	if h == nil || len(h.GetBucket()) < 5 {
		t.Errorf("latency histogram without buckets: %v", h)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkNoHostLabels fails if any porthole_ series carries a tunnel's host
// name, or a label called host, outside the per-tunnel family.
func checkNoHostLabels(t *testing.T, sc adminScrape, hosts ...string) {
	t.Helper()
	for name, f := range sc {
		if !strings.HasPrefix(name, "porthole_") || name == "porthole_tunnel_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "host" || l.GetName() == "subdomain" || l.GetName() == "user" {
					t.Errorf("%s has an unbounded label %s=%q", name, l.GetName(), l.GetValue())
				}
				for _, h := range hosts {
					if strings.Contains(l.GetValue(), strings.SplitN(h, ".", 2)[0]) {
						t.Errorf("%s has a label naming a tunnel: %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

// TestAdmin runs the metrics, the admin API and its commands against one
// server on SQLite with an admin token, as an operator would use them.
func TestAdmin(t *testing.T) {
	s := limStartServer(t, adminConfig)
	app := startAdminApp(t)
	aliceKey := s.limUserKey(t, "alice")
	bobKey := s.limUserKey(t, "bob")
	visitor := s.limVisitor(t, "")

	t.Run("Health", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
			code, _, body := adminDo(t, "GET", s.adminAddr, path, "")
			if code != 200 || strings.TrimSpace(body) != want {
				t.Errorf("%s: %d %q", path, code, body)
			}
		}
	})

	t.Run("FamiliesBeforeTraffic", func(t *testing.T) {
		sc := adminScrapeMetrics(t, s.adminAddr)
		checkAdminFamilies(t, sc, false, false)
		for _, series := range []string{"porthole_sessions", "porthole_tunnels", "porthole_sessions_total", "porthole_streams", "porthole_names_held"} {
			if v := sc.value(t, series); v != 0 {
				t.Errorf("%s = %v on an idle server", series, v)
			}
		}
	})

	t.Run("APIAuth", func(t *testing.T) {
		for _, ep := range []struct{ method, path string }{
			{"GET", "/api/sessions"}, {"GET", "/api/sessions?user=alice"},
			{"POST", "/api/sessions/nope/kick"}, {"DELETE", "/api/sessions/nope"},
			{"GET", "/api/users/alice/usage"},
		} {
			for _, tok := range []string{"", "wrong-" + adminToken, adminToken[:len(adminToken)-1]} {
				code, h, body := adminDo(t, ep.method, s.adminAddr, ep.path, tok)
				if code != 401 {
					t.Errorf("%s %s with token %q: %d, want 401", ep.method, ep.path, tok, code)
				}
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s 401 without a Bearer challenge: %q", ep.method, ep.path, h.Get("WWW-Authenticate"))
				}
				if !strings.Contains(body, `"error"`) || strings.Contains(body, adminToken) {
					t.Errorf("%s %s 401 body %q", ep.method, ep.path, body)
				}
			}
		}
		code, _, _ := adminDo(t, "GET", s.adminAddr, "/api/sessions", adminToken)
		if code != 200 {
			t.Fatalf("with the token: %d", code)
		}
		// Health and metrics need no token: they are for probes and scrapers.
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/api/metrics"} {
			if code, _, _ := adminDo(t, "GET", s.adminAddr, p, ""); code != 200 {
				t.Errorf("%s without a token: %d", p, code)
			}
		}
		if code, _, body := adminDo(t, "POST", s.adminAddr, "/api/sessions/nope/kick", adminToken); code != 404 || !strings.Contains(body, "nope") {
			t.Errorf("kick of an unknown session: %d %s", code, body)
		}
	})

	var alice *proc
	var aliceURL string
	top := t // alice's client outlives the subtest that starts it
	t.Run("Traffic", func(t *testing.T) {
		before := adminScrapeMetrics(t, s.adminAddr)
		alice = s.client(top, app.port, "--api-key", aliceKey, "--subdomain", "alice-app")
		aliceURL = alice.forwarding(t)
		up := adminScrapeMetrics(t, s.adminAddr)
		for series, delta := range map[string]float64{"porthole_sessions": 1, "porthole_sessions_total": 1, "porthole_tunnels": 1, "porthole_names_held": 1} {
			if got := up.value(t, series) - before.value(t, series); got != delta {
				t.Errorf("%s moved by %v when a client connected, want %v", series, got, delta)
			}
		}

		// Requests of each class through the tunnel, and one to a host no
		// tunnel holds.
		const upload, download = 300 << 10, 500 << 10
		want := map[string]float64{"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
		noRedirect := *visitor
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		for _, r := range []struct {
			method, path, body string
			code               int
		}{
			{"GET", "/", "", 200}, {"GET", "/", "", 200}, {"GET", "/", "", 200},
			{"POST", "/upload", strings.Repeat("u", upload), 200},
			{"GET", fmt.Sprintf("/big?n=%d", download), "", 200},
			{"GET", "/moved", "", 302},
			{"GET", "/missing", "", 404}, {"GET", "/missing", "", 404},
			{"GET", "/boom", "", 500},
		} {
			code, _ := adminSend(t, &noRedirect, r.method, aliceURL+r.path, r.body)
			if code != r.code {
				t.Fatalf("%s %s: %d, want %d", r.method, r.path, code, r.code)
			}
			want[fmt.Sprintf("%dxx", code/100)]++
		}
		const proxied = 9
		if code, _ := adminSend(t, visitor, "GET", strings.Replace(aliceURL, "alice-app", "nobody-here", 1), ""); code != 404 {
			t.Fatalf("unknown host: %d", code)
		}
		want["4xx"]++

		after := adminScrapeMetrics(t, s.adminAddr)
		for class, n := range want {
			if got := after.value(t, "porthole_http_requests_total", "code", class) - up.value(t, "porthole_http_requests_total", "code", class); got != n {
				t.Errorf("requests{code=%q} moved by %v, want %v", class, got, n)
			}
		}
		if got := after.value(t, "porthole_http_request_duration_seconds") - up.value(t, "porthole_http_request_duration_seconds"); got != proxied {
			t.Errorf("latency histogram count moved by %v, want %v (one per proxied request)", got, proxied)
		}
		h := after.find("porthole_http_request_duration_seconds").GetHistogram()
		if h.GetSampleSum() <= 0 {
			t.Errorf("latency histogram sum %v", h.GetSampleSum())
		}
		if last := h.GetBucket()[len(h.GetBucket())-1]; last.GetCumulativeCount() > h.GetSampleCount() {
			t.Errorf("bucket le=%v holds %d of %d samples", last.GetUpperBound(), last.GetCumulativeCount(), h.GetSampleCount())
		}
		in := after.value(t, "porthole_bytes_total", "direction", "in") - up.value(t, "porthole_bytes_total", "direction", "in")
		out := after.value(t, "porthole_bytes_total", "direction", "out") - up.value(t, "porthole_bytes_total", "direction", "out")
		if in < upload || in > upload+64<<10 {
			t.Errorf("bytes in moved by %v after a %d-byte upload", in, upload)
		}
		if out < download || out > download+64<<10 {
			t.Errorf("bytes out moved by %v after a %d-byte download", out, download)
		}
		if got := after.value(t, "porthole_streams_total") - up.value(t, "porthole_streams_total"); got < 1 || got > proxied {
			t.Errorf("streams_total moved by %v for %d requests", got, proxied)
		}
		checkNoHostLabels(t, after, hostOfURL(t, aliceURL))
		if after.find("porthole_tunnel_http_requests_total") != nil || after["porthole_tunnel_http_requests_total"] != nil {
			t.Errorf("per-tunnel series without per_tunnel_labels")
		}

		// The admin API sees the same session and traffic.
		list := adminSessions(t, s.adminAddr, adminToken, "")
		ss := adminSessionOf(t, list, aliceURL)
		if ss.User != "alice" || ss.Auth == "" || ss.ID == "" {
			t.Errorf("session %+v", ss)
		}
		if !strings.HasPrefix(ss.Remote, "127.0.0.1:") {
			t.Errorf("remote_addr %q", ss.Remote)
		}
		if ss.Since.IsZero() || time.Since(ss.Since) > time.Minute || time.Until(ss.Since) > time.Second {
			t.Errorf("since %v", ss.Since)
		}
		if ss.Requests != proxied || len(ss.Tunnels) != 1 || ss.Tunnels[0].Requests != proxied {
			t.Errorf("requests %d (tunnels %+v), want %d", ss.Requests, ss.Tunnels, proxied)
		}
		if ss.BytesIn < upload || ss.BytesOut < download || int64(in) != ss.BytesIn || int64(out) != ss.BytesOut {
			t.Errorf("session bytes in %d out %d; metrics moved %v and %v", ss.BytesIn, ss.BytesOut, in, out)
		}
		if tn := ss.Tunnels[0]; tn.Kind != "http" || tn.Name != "http" || tn.Since.Before(ss.Since) {
			t.Errorf("tunnel %+v", tn)
		}
		if only := adminSessions(t, s.adminAddr, adminToken, "?user=bob"); len(only) != 0 {
			t.Errorf("?user=bob lists %+v", only)
		}
		if only := adminSessions(t, s.adminAddr, adminToken, "?user=alice"); len(only) != 1 || only[0].ID != ss.ID {
			t.Errorf("?user=alice lists %+v", only)
		}

		code, _, body := adminDo(t, "GET", s.adminAddr, "/api/users/alice/usage", adminToken)
		var u struct {
			User              string
			Sessions, Tunnels int
			Requests          int64
			BytesIn           int64 `json:"bytes_in"`
			BytesOut          int64 `json:"bytes_out"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &u) != nil {
			t.Fatalf("usage: %d %s", code, body)
		}
		if u.User != "alice" || u.Sessions != 1 || u.Tunnels != 1 || u.Requests != proxied || u.BytesIn != ss.BytesIn || u.BytesOut != ss.BytesOut {
			t.Errorf("alice's usage %+v, session %+v", u, ss)
		}
		code, _, body = adminDo(t, "GET", s.adminAddr, "/api/users/nobody/usage", adminToken)
		if code != 200 || !strings.Contains(body, `"sessions": 0`) {
			t.Errorf("usage of a user without sessions: %d %s", code, body)
		}
	})

	t.Run("JSONSnapshot", func(t *testing.T) {
		// Nothing moves between the two reads: the client is idle and no
		// visitor is connected.
		text := adminScrapeMetrics(t, s.adminAddr)
		js := adminJSONMetrics(t, s.adminAddr)
		for name, f := range text {
			if !strings.HasPrefix(name, "porthole_") {
				if _, ok := js[name]; !ok {
					t.Errorf("/api/metrics lacks %s", name)
				}
				continue
			}
			jf, ok := js[name]
			if !ok {
				t.Errorf("/api/metrics lacks %s", name)
				continue
			}
			if jf.Help != f.GetHelp() || !strings.EqualFold(jf.Type, f.GetType().String()) {
				t.Errorf("%s: JSON help %q type %q; text %q %v", name, jf.Help, jf.Type, f.GetHelp(), f.GetType())
			}
			if len(jf.Metrics) != len(f.GetMetric()) {
				t.Errorf("%s: %d series in JSON, %d in text", name, len(jf.Metrics), len(f.GetMetric()))
				continue
			}
			bySet := map[string]int{}
			for i, m := range jf.Metrics {
				var ls []string
				for k, v := range m.Labels {
					ls = append(ls, k+"="+fmt.Sprintf("%q", v))
				}
				sort.Strings(ls)
				bySet[strings.Join(ls, ",")] = i
			}
			for _, m := range f.GetMetric() {
				i, ok := bySet[adminLabelsKey(m)]
				if !ok {
					t.Errorf("%s{%s} missing from JSON", name, adminLabelsKey(m))
					continue
				}
				jm := jf.Metrics[i]
				if hg := m.GetHistogram(); hg != nil {
					if jm.Count == nil || *jm.Count != hg.GetSampleCount() || jm.Sum == nil || math.Abs(*jm.Sum-hg.GetSampleSum()) > 1e-9 {
						t.Errorf("%s: JSON count %v sum %v; text %d %v", name, jm.Count, jm.Sum, hg.GetSampleCount(), hg.GetSampleSum())
					}
					for _, b := range hg.GetBucket() {
						key := fmt.Sprint(b.GetUpperBound())
						if v, ok := jm.Buckets[key]; !ok || v != float64(b.GetCumulativeCount()) {
							t.Errorf("%s bucket %s: JSON %v (%v), text %d", name, key, v, ok, b.GetCumulativeCount())
						}
					}
					if v, ok := jm.Buckets["+Inf"]; !ok || v != float64(hg.GetSampleCount()) {
						t.Errorf("%s bucket +Inf: JSON %v (%v), count %d", name, v, ok, hg.GetSampleCount())
					}
					continue
				}
				if jm.Value == nil || *jm.Value != text.value(t, name, adminLabelPairs(m)...) {
					t.Errorf("%s{%s}: JSON %v, text %v", name, adminLabelsKey(m), jm.Value, text.value(t, name, adminLabelPairs(m)...))
				}
			}
		}
		if v := js["porthole_sessions"].Metrics; len(v) != 1 || v[0].Value == nil || *v[0].Value != 1 {
			t.Errorf("JSON porthole_sessions %+v, want 1", v)
		}
	})

	t.Run("AuthFailures", func(t *testing.T) {
		before := adminScrapeMetrics(t, s.adminAddr)
		forged := aliceKey[:len(aliceKey)-4] + "abcd"
		if forged == aliceKey {
			forged = aliceKey[:len(aliceKey)-4] + "dcba"
		}
		bad := s.client(t, app.port, "--api-key", forged)
		bad.refused(t, `(?i)unauthori|invalid|unknown|not valid`)
		none := s.client(t, app.port)
		none.refused(t, `(?i)credential|unauthori|api key`)
		if code, _, refusal, err := limHandshake(s.tunnelAddr, "", "not-a-credential"); err != nil || code != 401 || refusal == nil {
			t.Errorf("handshake with a bad bearer: %d %v %v", code, refusal, err)
		}
		// A handshake that asks for another protocol version.
		req, _ := http.NewRequest("GET", "http://"+s.tunnelAddr+"/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Protocol", "porthole-v0-ancient")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
			t.Errorf("handshake for another protocol version: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		after := adminScrapeMetrics(t, s.adminAddr)
		d := func(name string, l ...string) float64 {
			return after.value(t, name, l...) - before.value(t, name, l...)
		}
		if got := d("porthole_auth_failures_total", "reason", "unauthorized"); got != 3 {
			t.Errorf("auth_failures{reason=unauthorized} moved by %v, want 3", got)
		}
		if got := d("porthole_auth_failures_total", "reason", "unsupported_version"); got != 1 {
			t.Errorf("auth_failures{reason=unsupported_version} moved by %v, want 1", got)
		}
		if got := d("porthole_handshake_failures_total"); got != 4 {
			t.Errorf("handshake_failures_total moved by %v, want 4 (every refusal)", got)
		}
		if got := d("porthole_auth_failures_total", "reason", "forbidden"); got != 0 {
			t.Errorf("auth_failures{reason=forbidden} moved by %v", got)
		}
		if got := d("porthole_sessions_total"); got != 0 {
			t.Errorf("refused clients counted as sessions: %v", got)
		}
	})

	t.Run("LimitHits", func(t *testing.T) {
		key := s.limUserKey(t, "carol", "--requests-per-second", "1", "--burst", "2")
		c := s.client(t, app.port, "--api-key", key)
		u := c.forwarding(t)
		before := adminScrapeMetrics(t, s.adminAddr)
		refused := 0
		for range 6 {
			code, _ := adminSend(t, visitor, "GET", u+"/", "")
			if code == 429 {
				refused++
			} else if code != 200 {
				t.Fatalf("visit: %d", code)
			}
		}
		if refused < 3 {
			t.Fatalf("%d of 6 quick requests refused with a limit of 1/s and a burst of 2", refused)
		}
		after := adminScrapeMetrics(t, s.adminAddr)
		d := func(name string, l ...string) float64 {
			return after.value(t, name, l...) - before.value(t, name, l...)
		}
		if got := d("porthole_limit_hits_total", "kind", string(limits.TunnelRequestRate)); got != float64(refused) {
			t.Errorf("limit_hits{kind=%s} moved by %v, want %d", limits.TunnelRequestRate, got, refused)
		}
		if got := d("porthole_http_requests_total", "code", "4xx"); got != float64(refused) {
			t.Errorf("requests{code=4xx} moved by %v, want %d (the 429s)", got, refused)
		}
		if got := d("porthole_http_request_duration_seconds"); got != float64(6-refused) {
			t.Errorf("latency count moved by %v, want %d (refused requests never reach the client)", got, 6-refused)
		}
		for _, k := range limits.AllKinds {
			if k != limits.TunnelRequestRate && d("porthole_limit_hits_total", "kind", string(k)) != 0 {
				t.Errorf("limit_hits{kind=%s} moved too", k)
			}
		}
		c.stop()
		// A client that stops gives its tunnel back.
		pollFor(t, "carol's session ends", 5*time.Second, 50*time.Millisecond, func() bool {
			return len(adminSessions(t, s.adminAddr, adminToken, "?user=carol")) == 0
		})
	})

	t.Run("CLI", func(t *testing.T) {
		flags := []string{"--admin-addr", s.adminAddr}
		out, errOut, code := adminCLI(t, nil, append([]string{"list", "--admin-token", adminToken}, flags...)...)
		ss := adminSessionOf(t, adminSessions(t, s.adminAddr, adminToken, ""), aliceURL)
		if code != 0 {
			t.Fatalf("sessions list: exit %d\n%s%s", code, out, errOut)
		}
		header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		for _, col := range []string{"SESSION", "USER", "REMOTE", "SINCE", "TUNNELS", "REQUESTS", "IN", "OUT"} {
			if !containsString(header, col) {
				t.Errorf("sessions list header %v lacks %s", header, col)
			}
		}
		row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ss.ID) + `\s+alice\s+127\.0\.0\.1:\d+\s+\S+\s+1\s+9\s`)
		if !row.MatchString(out) || !strings.Contains(out, aliceURL) {
			t.Errorf("sessions list lacks alice's session %s with 1 tunnel, 9 requests and %s:\n%s", ss.ID, aliceURL, out)
		}

		// The token from the environment; --json for scripts.
		out, errOut, code = adminCLI(t, []string{"PORTHOLE_ADMIN_TOKEN=" + adminToken}, append([]string{"list", "--json", "--user", "alice"}, flags...)...)
		var list []adminSession
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != ss.ID || list[0].Requests != 9 {
			t.Errorf("sessions list --json --user alice: exit %d\n%s%s", code, out, errOut)
		}
		out, _, code = adminCLI(t, []string{"PORTHOLE_ADMIN_TOKEN=" + adminToken}, append([]string{"list", "--json", "--user", "bob"}, flags...)...)
		if code != 0 || strings.TrimSpace(out) != "[]" {
			t.Errorf("sessions list --json --user bob: exit %d %q", code, out)
		}

		for _, c := range []struct {
			env  []string
			args []string
			code int
			msg  string
		}{
			{nil, []string{"list"}, 1, "token"},
			{[]string{"PORTHOLE_ADMIN_TOKEN=wrong"}, []string{"list"}, 1, "token"},
			{nil, []string{"list", "--admin-token", "wrong"}, 1, "token"},
			{nil, []string{"kick", "nope", "--admin-token", adminToken}, 1, "nope"},
			{nil, []string{"kick", "--admin-token", adminToken}, 2, "SESSION_ID"},
			{nil, []string{"list", "--bogus"}, 2, "bogus"},
		} {
			out, errOut, code := adminCLI(t, c.env, append(c.args, flags...)...)
			if code != c.code || !strings.Contains(errOut, c.msg) {
				t.Errorf("sessions %v (env %v): exit %d, want %d with %q\n%s%s", c.args, c.env, code, c.code, c.msg, out, errOut)
			}
		}
		out, errOut, code = adminCLI(t, nil, "list", "--admin-addr", freeAddr(t), "--admin-token", adminToken)
		if code != 1 || !strings.Contains(errOut, "no server admin API") {
			t.Errorf("list against nothing: exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("RevokedSessionGauges", func(t *testing.T) {
		// A session cut off by a revoked key counts its tunnels out once.
		key := s.limUserKey(t, "dave")
		before := adminScrapeMetrics(t, s.adminAddr)
		c := s.client(t, app.port, "--api-key", key)
		c.forwarding(t)
		s.mustAdmin(t, "keys", "revoke", key)
		c.refused(t, `revoked`)
		pollFor(t, "dave's session ends", 5*time.Second, 50*time.Millisecond, func() bool {
			return len(adminSessions(t, s.adminAddr, adminToken, "?user=dave")) == 0
		})
		after := adminScrapeMetrics(t, s.adminAddr)
		for _, series := range []string{"porthole_sessions", "porthole_tunnels", "porthole_names_held", "porthole_streams"} {
			if b, a := before.value(t, series), after.value(t, series); a != b {
				t.Errorf("%s: %v before dave's session, %v after its revocation", series, b, a)
			}
		}
	})

	t.Run("ReconnectReclaims", func(t *testing.T) {
		// A client whose connection drops keeps its name for the grace
		// period (held, not bound) and takes it back when it reconnects.
		key := s.limUserKey(t, "erin")
		path := startAdminProxy(t, s.tunnelAddr)
		c := startPorthole(t, interrupted, "http", app.port, "--server", "ws://"+path.addr(), "--inspect-addr", "127.0.0.1:0", "--api-key", key)
		u := c.forwarding(t)
		before := adminScrapeMetrics(t, s.adminAddr)
		path.set(proxyCut)
		pollFor(t, "erin's session ends", 5*time.Second, 50*time.Millisecond, func() bool {
			return len(adminSessions(t, s.adminAddr, adminToken, "?user=erin")) == 0
		})
		away := adminScrapeMetrics(t, s.adminAddr)
		d := func(sc adminScrape, name string) float64 { return sc.value(t, name) - before.value(t, name) }
		if d(away, "porthole_tunnels") != -1 || d(away, "porthole_sessions") != -1 || d(away, "porthole_names_held") != 0 {
			t.Errorf("client away: tunnels %+v, sessions %+v, names held %+v; want -1, -1, 0",
				d(away, "porthole_tunnels"), d(away, "porthole_sessions"), d(away, "porthole_names_held"))
		}
		if code, _ := adminSend(t, visitor, "GET", u+"/", ""); code != 503 {
			t.Errorf("visitor while the client is away: %d, want 503", code)
		}
		path.set(proxyOpen)
		pollFor(t, "erin's client is back", 15*time.Second, 50*time.Millisecond, func() bool {
			code, _ := adminSend(t, visitor, "GET", u+"/", "")
			return code == 200
		})
		back := adminScrapeMetrics(t, s.adminAddr)
		if d(back, "porthole_tunnel_reclaims_total") != 1 || d(back, "porthole_tunnels") != 0 || d(back, "porthole_sessions") != 0 ||
			d(back, "porthole_names_held") != 0 || d(back, "porthole_sessions_total") != 1 {
			t.Errorf("client back: reclaims %+v, tunnels %+v, sessions %+v, names held %+v, sessions_total %+v; want 1, 0, 0, 0, 1",
				d(back, "porthole_tunnel_reclaims_total"), d(back, "porthole_tunnels"), d(back, "porthole_sessions"),
				d(back, "porthole_names_held"), d(back, "porthole_sessions_total"))
		}
		if got := back.value(t, "porthole_http_requests_total", "code", "5xx") - away.value(t, "porthole_http_requests_total", "code", "5xx"); got < 1 {
			t.Errorf("the 503 while the client was away was not counted as 5xx")
		}
		c.stop()
		// The next subtest counts sessions: erin's must be gone first.
		pollFor(t, "erin's session ends after stop", 5*time.Second, 50*time.Millisecond, func() bool {
			return len(adminSessions(t, s.adminAddr, adminToken, "?user=erin")) == 0
		})
	})

	t.Run("Kick", func(t *testing.T) {
		before := adminScrapeMetrics(t, s.adminAddr)
		ss := adminSessionOf(t, adminSessions(t, s.adminAddr, adminToken, ""), aliceURL)
		const reason = "maintenance window until noon"
		// The client is frozen while it is kicked, so it cannot hang up
		// by itself: the server alone must free the name.
		if err := alice.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				alice.cmd.Process.Signal(syscall.SIGCONT)
			}
		}()
		out, errOut, code := adminCLI(t, nil, "kick", ss.ID, "--reason", reason, "--admin-addr", s.adminAddr, "--admin-token", adminToken)
		if code != 0 || !strings.Contains(out, "kicked session "+ss.ID) {
			t.Fatalf("sessions kick: exit %d\n%s%s", code, out, errOut)
		}
		// The name is free at once: no visitor reaches the kicked client,
		// and another user can take it.
		if code, body := adminSend(t, visitor, "GET", aliceURL+"/", ""); code != 404 {
			t.Errorf("right after the kick the name answers %d %q, want 404", code, body)
		}
		bob := s.client(t, app.port, "--api-key", bobKey, "--subdomain", "alice-app")
		if got := bob.forwarding(t); got != aliceURL {
			t.Fatalf("bob got %s, want %s", got, aliceURL)
		}
		alice.cmd.Process.Signal(syscall.SIGCONT)
		resumed = true
		if code := alice.exit(t, 5*time.Second); code != 1 {
			t.Errorf("kicked client exited %d, want 1", code)
		}
		if !strings.Contains(alice.errOut(), reason) {
			t.Errorf("kicked client's stderr lacks the reason %q:\n%s", reason, alice.errOut())
		}
		if strings.Contains(alice.errOut(), "reconnecting") {
			t.Errorf("kicked client tried to reconnect:\n%s", alice.errOut())
		}
		if code, body := adminSend(t, visitor, "GET", aliceURL+"/", ""); code != 200 || body != "admin app" {
			t.Errorf("bob's tunnel: %d %q", code, body)
		}
		mid := adminScrapeMetrics(t, s.adminAddr)
		for _, series := range []string{"porthole_sessions", "porthole_tunnels", "porthole_names_held"} {
			if mid.value(t, series) != before.value(t, series) {
				t.Errorf("%s: %v before the kick, %v after alice left and bob came", series, before.value(t, series), mid.value(t, series))
			}
		}

		// DELETE kicks too; the default reason names the operator.
		bs := adminSessions(t, s.adminAddr, adminToken, "?user=bob")
		if len(bs) != 1 {
			t.Fatalf("bob's sessions %+v", bs)
		}
		if code, _, body := adminDo(t, "DELETE", s.adminAddr, "/api/sessions/"+url.PathEscape(bs[0].ID), adminToken); code != 200 || !strings.Contains(body, bs[0].ID) {
			t.Fatalf("DELETE session: %d %s", code, body)
		}
		if code := bob.exit(t, 5*time.Second); code != 1 {
			t.Errorf("kicked bob exited %d, want 1", code)
		}
		if !strings.Contains(bob.errOut(), "operator") {
			t.Errorf("bob's stderr lacks the default reason:\n%s", bob.errOut())
		}
		after := adminScrapeMetrics(t, s.adminAddr)
		for series, delta := range map[string]float64{"porthole_sessions": -1, "porthole_tunnels": -1, "porthole_names_held": -1, "porthole_tunnel_reclaims_total": 0} {
			if got := after.value(t, series) - before.value(t, series); got != delta {
				t.Errorf("%s moved by %v after two kicks and one new client, want %v", series, got, delta)
			}
		}
		if got := after.value(t, "porthole_sessions_total") - before.value(t, "porthole_sessions_total"); got != 1 {
			t.Errorf("sessions_total moved by %v, want 1 (bob)", got)
		}
		code, _, body := adminDo(t, "GET", s.adminAddr, "/api/users/bob/usage", adminToken)
		if code != 200 || !strings.Contains(body, `"sessions": 0`) || !strings.Contains(body, `"tunnels": 0`) {
			t.Errorf("bob's usage after the kick: %d %s", code, body)
		}
		if code, _, _ := adminDo(t, "POST", s.adminAddr, "/api/sessions/"+bs[0].ID+"/kick", adminToken); code != 404 {
			t.Errorf("kicking a session twice: %d, want 404", code)
		}
	})

	t.Run("ShutdownNotReady", func(t *testing.T) {
		c := s.client(t, app.port, "--api-key", aliceKey)
		u := c.forwarding(t)
		type result struct {
			code int
			body string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := visitor.Get(u + "/slow")
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b := new(strings.Builder)
			_, err = io.Copy(b, resp.Body)
			done <- result{resp.StatusCode, b.String(), err}
		}()
		select {
		case <-app.slowIn:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow request did not reach the app")
		}
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// While the request drains, the process is alive but not ready.
		var mu sync.Mutex
		seen := ""
		pollFor(t, "/readyz turns 503 during the drain", 5*time.Second, 50*time.Millisecond, func() bool {
			code, _, body := adminDo(t, "GET", s.adminAddr, "/readyz", "")
			mu.Lock()
			seen = fmt.Sprintf("%d %s", code, body)
			mu.Unlock()
			return code == 503
		})
		if !strings.Contains(seen, "shutting down") {
			t.Errorf("/readyz during shutdown: %s", seen)
		}
		if code, _, _ := adminDo(t, "GET", s.adminAddr, "/healthz", ""); code != 200 {
			t.Errorf("/healthz during the drain: %d", code)
		}
		app.releaseSlow()
		r := <-done
		if r.err != nil || r.code != 200 || r.body != "slow done" {
			t.Errorf("in-flight request across the shutdown: %d %q %v", r.code, r.body, r.err)
		}
		if code := s.exit(t, 15*time.Second); code != 0 {
			t.Errorf("server exited %d after SIGTERM", code)
		}
	})
}

// TestAdminPerTunnelLabels: a server with per_tunnel_labels, a
// certificate and no admin token exports a series per tunnel host and the
// certificate families, and keeps its admin API off.
func TestAdminPerTunnelLabels(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := issueIDCert(t, nil, dir, "tun.test", true, time.Now().Add(90*24*time.Hour))
	s := limStartServer(t, "[metrics]\nper_tunnel_labels = true\n", "--no-auth", "--tls-cert", certFile, "--tls-key", keyFile,
		"--https-addr", "127.0.0.1:0")
	app := startAdminApp(t)
	visitor := s.limVisitor(t, "")

	sc := adminScrapeMetrics(t, s.adminAddr)
	// A vector with no series yet is not exported: the per-tunnel family
	// appears with the first request.
	checkAdminFamilies(t, sc, false, true)
	if n := len(sc["porthole_tunnel_http_requests_total"].GetMetric()); n != 0 {
		t.Errorf("per-tunnel series before any tunnel: %d", n)
	}
	// The series is named by the certificate's first DNS name.
	exp := sc.find("porthole_tls_certificate_expiry_timestamp_seconds", "source", "file", "name", "localhost")
	if exp == nil {
		t.Errorf("no expiry series for the file certificate: %v", sc["porthole_tls_certificate_expiry_timestamp_seconds"])
	} else if d := exp.GetGauge().GetValue() - float64(time.Now().Add(90*24*time.Hour).Unix()); d > 60 || d < -60 {
		t.Errorf("certificate expiry %v is %vs off", exp.GetGauge().GetValue(), d)
	}
	if v := sc.value(t, "porthole_tls_certificate_reloads_total", "result", "error"); v != 0 {
		t.Errorf("reload errors %v", v)
	}

	// Without admin_token the API is off, and says how to turn it on.
	for _, tok := range []string{"", "anything"} {
		code, _, body := adminDo(t, "GET", s.adminAddr, "/api/sessions", tok)
		if code != 403 || !strings.Contains(body, "admin_token") {
			t.Errorf("admin API without admin_token (token %q): %d %s", tok, code, body)
		}
	}
	out, errOut, code := adminCLI(t, nil, "list", "--admin-addr", s.adminAddr, "--admin-token", "anything")
	if code != 1 || !strings.Contains(errOut, "admin_token") {
		t.Errorf("sessions list against a server without admin_token: exit %d\n%s%s", code, out, errOut)
	}

	one := s.client(t, app.port, "--subdomain", "one", "--ca-file", certFile)
	two := s.client(t, app.port, "--subdomain", "two", "--ca-file", certFile)
	three := s.client(t, app.port, "--subdomain", "three", "--ca-file", certFile, "--https-redirect")
	// With HTTPS on, Forwarding shows https:// URLs; visitors here come
	// over plain HTTP.
	_, httpPort, _ := net.SplitHostPort(s.httpAddr)
	plain := func(u string) string { return "http://" + net.JoinHostPort(hostOfURL(t, u), httpPort) }
	u1, u2, u3 := plain(one.forwarding(t)), plain(two.forwarding(t)), plain(three.forwarding(t))
	before := adminScrapeMetrics(t, s.adminAddr)
	for range 3 {
		adminSend(t, visitor, "GET", u1+"/", "")
	}
	adminSend(t, visitor, "GET", u1+"/missing", "")
	adminSend(t, visitor, "GET", u2+"/boom", "")
	// A plain-HTTP visitor of an --https-redirect tunnel is answered 308 by
	// the server itself: a request of class 3xx, not one for the tunnel.
	noRedirect := *visitor
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if code, _ := adminSend(t, &noRedirect, "GET", u3+"/", ""); code != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP to an --https-redirect tunnel: %d, want 308", code)
	}
	sc = adminScrapeMetrics(t, s.adminAddr)
	for class, want := range map[string]float64{"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 1} {
		if got := sc.value(t, "porthole_http_requests_total", "code", class) - before.value(t, "porthole_http_requests_total", "code", class); got != want {
			t.Errorf("requests{code=%q} moved by %v, want %v", class, got, want)
		}
	}
	checkAdminFamilies(t, sc, true, true)
	for _, c := range []struct {
		host, code string
		want       float64
	}{{hostOfURL(t, u1), "2xx", 3}, {hostOfURL(t, u1), "4xx", 1}, {hostOfURL(t, u2), "5xx", 1}} {
		if got := sc.value(t, "porthole_tunnel_http_requests_total", "host", c.host, "code", c.code); got != c.want {
			t.Errorf("tunnel_http_requests_total{host=%q,code=%q} = %v, want %v", c.host, c.code, got, c.want)
		}
	}
	if n := len(sc["porthole_tunnel_http_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d per-tunnel series, want 3 (one per host and class seen)", n)
	}
	// The host names stay out of every other family.
	checkNoHostLabels(t, sc, hostOfURL(t, u1), hostOfURL(t, u2), hostOfURL(t, u3))
	js := adminJSONMetrics(t, s.adminAddr)
	if f, ok := js["porthole_tunnel_http_requests_total"]; !ok || len(f.Metrics) != 3 {
		t.Errorf("JSON per-tunnel family: %+v", f)
	}
	if _, ok := js["porthole_tls_certificate_expiry_timestamp_seconds"]; !ok {
		t.Errorf("JSON lacks the certificate expiry family")
	}
}

// TestAdminReadyPostgres: /readyz follows the server's reach to its
// PostgreSQL database, cut and restored through a proxy the test holds.
func TestAdminReadyPostgres(t *testing.T) {
	base := postgresURL(t, "the readiness test")
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	schema := fmt.Sprintf("porthole_admin_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("PORTHOLE_TEST_POSTGRES: %v", err)
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA " + schema + " CASCADE") })

	proxy := startAdminProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = proxy.addr()
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()

	s := limStartServer(t, adminConfig, "--database", u.String())
	ready := func() (int, string) {
		code, _, body := adminDo(t, "GET", s.adminAddr, "/readyz", "")
		return code, body
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("/readyz with the database reachable: %d %s", code, body)
	}
	// Refused connections (the database is down), then a path that
	// swallows packets (a network partition): /readyz must say 503 in
	// both cases, in the second within its own time bound.
	for _, mode := range []adminProxyMode{proxyCut, proxyStall, proxyCut} {
		proxy.set(mode)
		start := time.Now()
		var last string
		var slowest time.Duration
		pollFor(t, "/readyz turns 503 with the database away", 15*time.Second, 50*time.Millisecond, func() bool {
			t0 := time.Now()
			code, body := ready()
			slowest = max(slowest, time.Since(t0))
			last = body
			return code == 503
		})
		t.Logf("mode %d: not ready after %s (slowest probe %s): %s", mode, time.Since(start).Round(time.Millisecond),
			slowest.Round(time.Millisecond), strings.TrimSpace(last))
		if slowest > 4*time.Second {
			t.Errorf("a /readyz probe took %s with the database away; probes time out", slowest)
		}
		if cfg.Password != "" && strings.Contains(last, ":"+cfg.Password+"@") {
			t.Errorf("/readyz shows the database password: %s", last)
		}
		// Liveness is not readiness: the process stays healthy.
		if code, _, _ := adminDo(t, "GET", s.adminAddr, "/healthz", ""); code != 200 {
			t.Errorf("/healthz while the database is away: %d", code)
		}
		proxy.set(proxyOpen)
		pollFor(t, "/readyz turns 200 with the database back", 10*time.Second, 50*time.Millisecond, func() bool {
			code, _ := ready()
			return code == 200
		})
	}
}
