package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/metrics"
)

func inspectGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// inspectEventually retries f until it returns nil or 10 s pass.
func inspectEventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInspectAPI drives the local API of a real client: status, the
// request list and detail, body truncation, replay, both metrics exports
// and `porthole status`.
func TestInspectAPI(t *testing.T) {
	srv := inspectStartServer(t)
	app := inspectStartApp(t)
	c := inspectStartClient(t, srv, app, "--inspect-body-limit", "1KiB")
	api := "http://" + c.inspectAddr

	resp := inspectVisit(t, srv, "POST", c.url, "/orders?src=e2e", "application/json", `{"qty":2,"item":"tea"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("visit: %s", resp.Status)
	}
	app.next(t, 5*time.Second)
	inspectVisit(t, srv, "PUT", c.url, "/upload", "application/octet-stream", strings.Repeat("\x00\x01", 2<<10))
	app.next(t, 5*time.Second)
	inspectVisit(t, srv, "GET", c.url, "/missing", "", "")
	app.next(t, 5*time.Second)

	var st client.Status
	inspectEventually(t, "status", func() error {
		st = client.Status{}
		inspectGetJSON(t, api+"/api/status", &st)
		if st.State != "online" || st.Server != srv.wsURL() || st.LatencyMS <= 0 || len(st.Tunnels) != 1 || st.Tunnels[0].Requests != 3 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	tun := st.Tunnels[0]
	if tun.URL != c.url || tun.Target != "http://"+app.addr || tun.BytesIn < 4<<10 || tun.BytesOut == 0 || tun.OpenConns != 0 || st.Reconnects != 0 || st.UptimeSec <= 0 {
		t.Errorf("tunnel status %+v (status %+v)", tun, st)
	}

	var list inspect.RequestList
	inspectGetJSON(t, api+"/api/requests", &list)
	if len(list.Requests) != 3 {
		t.Fatalf("requests: %+v", list.Requests)
	}
	missing, upload, orders := list.Requests[0], list.Requests[1], list.Requests[2]
	if orders.Method != "POST" || orders.Path != "/orders?src=e2e" || orders.Status != 200 || !orders.Done || missing.Status != 404 {
		t.Errorf("list %+v", list.Requests)
	}

	var d inspect.Detail
	inspectGetJSON(t, fmt.Sprintf("%s/api/requests/%d", api, orders.ID), &d)
	if d.Request.Body.Kind != "json" || !strings.Contains(d.Request.Body.Display, "\"qty\": 2") ||
		d.Request.Headers.Get("X-E2e") != "visitor" || d.Request.Headers.Get("X-Forwarded-For") == "" ||
		d.Response.Body.Kind != "json" || d.Response.Headers.Get("Content-Type") != "application/json" || d.RemoteAddr != "127.0.0.1" {
		t.Errorf("detail %+v", d)
	}
	inspectGetJSON(t, fmt.Sprintf("%s/api/requests/%d", api, upload.ID), &d)
	if b := d.Request.Body; !b.Truncated || b.Captured != 1024 || b.Size != 4<<10 || b.Kind != "binary" {
		t.Errorf("upload body: truncated %v captured %d size %d kind %s", b.Truncated, b.Captured, b.Size, b.Kind)
	}

	// A large body streams through; the inspector keeps 1 KiB of it.
	big := inspectVisit(t, srv, "PUT", c.url, "/big", "application/octet-stream", strings.Repeat("0123456789abcdef", 1<<19))
	if seen := app.next(t, 10*time.Second); big.StatusCode != 200 || len(seen.Body) != 8<<20 {
		t.Fatalf("8 MiB upload: %s, app got %d bytes", big.Status, len(seen.Body))
	}
	inspectGetJSON(t, api+"/api/requests?limit=1", &list)
	if r := list.Requests[0]; r.Path != "/big" || r.RequestSize != 8<<20 || list.Stats.StoredBytes > 4*1024+int64(len(`{"qty":2,"item":"tea"}`))+200 {
		t.Errorf("after an 8 MiB upload: %+v, stats %+v", r, list.Stats)
	}

	// Replay the POST with a changed path: it reaches the app again.
	rr, err := http.Post(fmt.Sprintf("%s/api/requests/%d/replay", api, orders.ID), "application/json", strings.NewReader(`{"path":"/orders?src=replay"}`))
	if err != nil {
		t.Fatal(err)
	}
	var res inspect.ReplayResult
	json.NewDecoder(rr.Body).Decode(&res)
	rr.Body.Close()
	got := app.next(t, 5*time.Second)
	if got.Method != "POST" || got.URI != "/orders?src=replay" || got.Body != `{"qty":2,"item":"tea"}` || got.Header.Get("X-Forwarded-Host") == "" {
		t.Errorf("replay reached the app as %+v", got)
	}
	if rr.StatusCode != 200 || res.Status != 200 || res.ID == 0 {
		t.Errorf("replay answer %s %+v", rr.Status, res)
	}

	// Prometheus text: the families are there and the request count moves.
	scrape := func() map[string]float64 {
		resp, err := http.Get(api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for name, f := range fams {
			for _, m := range f.GetMetric() {
				key := name
				for _, l := range m.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				switch {
				case m.Counter != nil:
					out[key] = m.GetCounter().GetValue()
				case m.Gauge != nil:
					out[key] = m.GetGauge().GetValue()
				case m.Histogram != nil:
					out[key+",count"] = float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		return out
	}
	before := scrape()
	for _, k := range []string{"porthole_client_connected", "porthole_client_latency_seconds", "porthole_client_reconnects_total",
		"porthole_client_tunnel_open_connections,proto=http,tunnel=http", "porthole_client_inspect_replays_total"} {
		if _, ok := before[k]; !ok {
			t.Errorf("/metrics lacks %s", k)
		}
	}
	if before["porthole_client_connected"] != 1 || before["porthole_client_tunnel_requests_total,proto=http,tunnel=http"] != 5 ||
		before["porthole_client_http_responses_total,code=4xx,tunnel=http"] != 1 || before["porthole_client_inspect_truncated_bodies_total"] < 1 {
		t.Errorf("metrics: %v", before)
	}
	inspectVisit(t, srv, "GET", c.url, "/again", "", "")
	app.next(t, 5*time.Second)
	after := scrape()
	if after["porthole_client_tunnel_requests_total,proto=http,tunnel=http"] != 6 ||
		after["porthole_client_http_request_duration_seconds,tunnel=http,count"] != before["porthole_client_http_request_duration_seconds,tunnel=http,count"]+1 {
		t.Errorf("metrics did not move: before %v after %v", before, after)
	}

	var mj metrics.Document
	inspectGetJSON(t, api+"/api/metrics", &mj)
	names := map[string]bool{}
	for _, f := range mj.Families {
		names[f.Name] = true
	}
	for _, n := range []string{"porthole_client_state", "porthole_client_tunnel_bytes_total", "porthole_client_http_request_duration_seconds"} {
		if !names[n] {
			t.Errorf("/api/metrics lacks %s", n)
		}
	}

	// porthole status, as JSON for a script and as a table for a person.
	out, err := exec.Command(portholeBin, "status", "--json", "--inspect-addr", c.inspectAddr).Output()
	if err != nil {
		t.Fatalf("porthole status --json: %v", err)
	}
	var sj client.Status
	if err := json.Unmarshal(out, &sj); err != nil || sj.State != "online" || sj.Tunnels[0].URL != c.url {
		t.Errorf("status --json: %v %s", err, out)
	}
	out, err = exec.Command(portholeBin, "status", "--inspect-addr", c.inspectAddr).Output()
	if err != nil {
		t.Fatalf("porthole status: %v", err)
	}
	for _, want := range []string{"online", srv.wsURL(), c.url, "http://" + app.addr, "REQUESTS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
	// A script reads the Forwarding line; the dashboard is not drawn on a pipe.
	if s := c.out(); !strings.HasPrefix(s, "Forwarding "+c.url+" -> ") || strings.Contains(s, "\x1b[") {
		t.Errorf("stdout on a pipe: %q", s)
	}
}

// TestInspectUpgradeAndStreaming checks that recording does not get in
// the way of a WebSocket upgrade or of a streamed response, and how both
// are recorded.
func TestInspectUpgradeAndStreaming(t *testing.T) {
	srv := inspectStartServer(t)
	app := inspectStartApp(t)
	c := inspectStartClient(t, srv, app)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.httpAddr)
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ws, _, err := websocket.Dial(ctx, strings.Replace(c.url, "http://", "ws://", 1)+"/ws", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("websocket through the tunnel: %v", err)
	}
	ws.Write(ctx, websocket.MessageText, []byte("ping"))
	_, msg, err := ws.Read(ctx)
	if err != nil || string(msg) != "ping" {
		t.Fatalf("websocket echo: %q %v", msg, err)
	}
	ws.Close(websocket.StatusNormalClosure, "")

	req, _ := http.NewRequestWithContext(ctx, "GET", c.url+"/sse", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event: %q %v (not flushed through the client?)", line, err)
	}
	// While the stream is open, it is listed as in progress.
	var list inspect.RequestList
	inspectGetJSON(t, "http://"+c.inspectAddr+"/api/requests", &list)
	if len(list.Requests) != 2 || list.Requests[0].Path != "/sse" || list.Requests[0].Done || list.Requests[0].Status != 200 {
		t.Errorf("while streaming: %+v", list.Requests)
	}
	resp.Body.Close()

	ws101 := list.Requests[1]
	inspectEventually(t, "websocket exchange recorded", func() error {
		inspectGetJSON(t, "http://"+c.inspectAddr+"/api/requests", &list)
		ws101 = list.Requests[len(list.Requests)-1]
		if ws101.Path != "/ws" || ws101.Status != 101 || !ws101.Done || ws101.Error != "" {
			return fmt.Errorf("%+v", ws101)
		}
		return nil
	})
}

// TestInspectBrowser loads the inspector page in headless Chromium, sees
// a request appear without reloading, opens it, replays it as is and
// edited, and checks that the replays reach the local app.
func TestInspectBrowser(t *testing.T) {
	chromium := inspectRequireTool(t, "chromium")
	srv := inspectStartServer(t)
	app := inspectStartApp(t)
	c := inspectStartClient(t, srv, app)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			inspectScreenshot(t, ctx, "failed")
			t.Fatalf("%s: %v\nclient log:\n%s", what, err, c.errOut())
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	do("load the inspector",
		chromedp.Navigate("http://"+c.inspectAddr+"/"),
		chromedp.WaitVisible(css("#empty")),
		// The live stream is open before the request is sent.
		chromedp.WaitVisible(css("#live:not(.off)")),
	)

	inspectVisit(t, srv, "POST", c.url, "/orders?src=browser", "application/json", `{"qty":2,"item":"tea"}`)
	app.next(t, 5*time.Second)

	do("see the request appear and open it",
		chromedp.WaitVisible(css(`#requests tbody tr.req:not(.pending)`)),
		chromedp.Click(css(`#requests tbody tr.req`)),
		chromedp.WaitVisible(css(`#detail .request pre.body.json`)),
		chromedp.WaitVisible(css(`#tunnels .tunnel`)),
	)
	if path, status, state := text(`#requests tbody tr.req td.path`), text(`#requests tbody tr.req td.status`), text(`#state`); path != "/orders?src=browser" || status != "200 OK" || state != "online" {
		t.Errorf("list row: path %q status %q state %q", path, status, state)
	}
	reqBody, respBody, headers := text(`#detail .request pre.body`), text(`#detail .response pre.body`), text(`#detail table.headers`)
	if reqBody != "{\n  \"qty\": 2,\n  \"item\": \"tea\"\n}" || !strings.Contains(respBody, "\"received_bytes\": 22") || !strings.Contains(headers, "X-E2e") {
		t.Errorf("detail: request body %q, response body %q, headers %q", reqBody, respBody, headers)
	}

	do("replay", chromedp.Click(css(`#replay`)), chromedp.WaitVisible(css(`#replay-result a.replay-link`)))
	got := app.next(t, 5*time.Second)
	if got.Method != "POST" || got.URI != "/orders?src=browser" || got.Body != `{"qty":2,"item":"tea"}` {
		t.Errorf("replay reached the app as %+v", got)
	}
	do("see the replay in the list", chromedp.WaitVisible(css(`#requests tbody tr.req.replay`)))

	do("edit and replay",
		chromedp.Click(css(`#edit-replay`)),
		chromedp.WaitVisible(css(`#replay-form`)),
		chromedp.SetValue(css(`#replay-method`), "PUT"),
		chromedp.SetValue(css(`#replay-path`), "/orders/7"),
		chromedp.SetValue(css(`#replay-body`), `{"qty":3}`),
		chromedp.Click(css(`#replay-send`)),
		chromedp.WaitVisible(css(`#replay-result a.replay-link`)),
	)
	got = app.next(t, 5*time.Second)
	if got.Method != "PUT" || got.URI != "/orders/7" || got.Body != `{"qty":3}` || got.Header.Get("X-E2e") != "visitor" {
		t.Errorf("edited replay reached the app as %+v", got)
	}
	do("three rows", chromedp.WaitVisible(css(`#requests tbody tr.req:nth-child(3)`)))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#requests tbody tr.req').length`))
	if err != nil || rows != 3 {
		t.Errorf("%d rows (%v), want 3", rows, err)
	}
	inspectScreenshot(t, ctx, "inspector")
}

// inspectScreenshot saves the page to $PORTHOLE_E2E_SCREENSHOTS/NAME.png
// when that variable names a directory, for a person to look at.
func inspectScreenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("PORTHOLE_E2E_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}
