package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// deployMetricRE matches the metric names the deploy files may use: the
// server's own families and client_golang's process and Go ones. PromQL
// functions, label names and Prometheus's own `up` do not match.
var deployMetricRE = regexp.MustCompile(`\b(?:porthole|process|go)_[a-z0-9_]+\b`)

// TestDeployMetricsExist checks that every metric named by an expression
// in deploy/prometheus/porthole-alerts.yml and deploy/grafana's dashboard
// is exported by a real server: one with a certificate (so the TLS
// families are there) that has served a visitor through a tunnel.
func TestDeployMetricsExist(t *testing.T) {
	dir := t.TempDir()
	leaf := issueTLSLeaf(t, nil, "*.tun.test", "tun.test", "127.0.0.1")
	cert := tlsWriteFile(t, filepath.Join(dir, "cert.pem"), leaf.CertPEM)
	key := tlsWriteFile(t, filepath.Join(dir, "key.pem"), leaf.KeyPEM)
	srv := startTLSServer(t, "--https-addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	app := tlsStartApp(t)
	c := startPorthole(t, interrupted, "http", app, "--server", "wss://"+srv.tunnelAddr, "--ca-file", cert,
		"--subdomain", "dash", "--inspect-addr", "off")
	url := c.forwarding(t)
	if !strings.HasPrefix(url, "https://dash.tun.test:") {
		t.Fatalf("Forwarding URL %q: want the https one", url)
	}
	resp, err := newTLSVisitor(tlsCertPool(leaf.CertPEM), srv.httpsAddr).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("visitor through the tunnel: %s", resp.Status)
	}

	exported := map[string]bool{}
	for name, f := range adminScrapeMetrics(t, srv.adminAddr) {
		exported[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[name+s] = true
			}
		case dto.MetricType_SUMMARY:
			exported[name+"_sum"], exported[name+"_count"] = true, true
		}
	}

	rules := deployRuleExprs(t, "../deploy/prometheus/porthole-alerts.yml")
	dash := deployDashboardExprs(t, "../deploy/grafana/porthole-dashboard.json")
	for file, exprs := range map[string][]string{"porthole-alerts.yml": rules, "porthole-dashboard.json": dash} {
		if len(exprs) < 10 {
			t.Errorf("%s: only %d expressions found", file, len(exprs))
		}
		used := map[string]bool{}
		for _, e := range exprs {
			for _, n := range deployMetricRE.FindAllString(e, -1) {
				used[n] = true
				if !exported[n] {
					t.Errorf("%s names %s, which the server does not export: %s", file, n, e)
				}
			}
		}
		names := make([]string, 0, len(used))
		for n := range used {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Logf("%s: %d expressions, %d metrics, all exported: %s", file, len(exprs), len(names), strings.Join(names, " "))
	}
	// The families the issue names are all watched.
	for _, want := range []string{"porthole_tunnels", "porthole_sessions", "porthole_http_requests_total", "porthole_limit_hits_total", "porthole_tls_certificate_expiry_timestamp_seconds"} {
		if !strings.Contains(strings.Join(rules, "\n")+strings.Join(dash, "\n"), want) {
			t.Errorf("neither file uses %s", want)
		}
	}
}

// deployRuleExprs returns the expr of every rule; each must be one line.
func deployRuleExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for i, line := range strings.Split(string(b), "\n") {
		_, e, ok := strings.Cut(line, "expr:")
		if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		e = strings.TrimSpace(e)
		if e == "" || e == "|" || e == ">" || strings.HasPrefix(e, "|") || strings.HasPrefix(e, ">") {
			t.Fatalf("%s:%d: keep each expr on one line so this test reads it", path, i+1)
		}
		exprs = append(exprs, e)
	}
	return exprs
}

// deployDashboardExprs returns every "expr" in the dashboard, and the
// metric names in its template variables' queries.
func deployDashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return exprs
}
