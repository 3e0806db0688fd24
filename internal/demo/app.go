package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/coder/websocket"
)

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>porthole demo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;padding:0 1em;color:#222}
code,pre{background:#f3f3f3;padding:.1em .3em}table{border-collapse:collapse}td{padding:.1em .8em .1em 0;vertical-align:top}
#clock{font-variant-numeric:tabular-nums}</style></head>
<body>
<h1>It works: this page came through a porthole tunnel</h1>
<p>You asked for <code>{{.Host}}{{.Path}}</code>. The porthole server received it, sent it over the client's
WebSocket session, and the client passed it to this app on <code>{{.Local}}</code>.</p>
<p>Server time, streamed with server-sent events: <b id="clock">…</b></p>
<p>WebSocket echo: <span id="ws">connecting…</span></p>
<h2>What the app saw</h2>
<table>{{range .Headers}}<tr><td><code>{{.K}}</code></td><td>{{.V}}</td></tr>{{end}}</table>
<script>
const es = new EventSource("/events");
es.onmessage = e => document.getElementById("clock").textContent = e.data;
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = () => ws.send("hello through the tunnel");
ws.onmessage = e => document.getElementById("ws").textContent = "got back \"" + e.data + "\"";
ws.onerror = () => document.getElementById("ws").textContent = "failed";
</script>
</body></html>
`))

// App is the demo's web app: a page showing the request as the app saw it,
// a server-sent event clock, a WebSocket echo and a JSON echo.
func App(local string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		type kv struct{ K, V string }
		var hs []kv
		for k, v := range r.Header {
			for _, x := range v {
				hs = append(hs, kv{k, x})
			}
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].K < hs[j].K })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		indexTmpl.Execute(w, map[string]any{"Host": r.Host, "Path": r.URL.Path, "Local": local, "Headers": hs})
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "data: %s\n\n", time.Now().Format("15:04:05"))
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
		defer cancel()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "host": r.Host, "headers": r.Header,
		})
	})
	return mux
}
