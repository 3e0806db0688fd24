package server

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Status}} {{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}code{background:#f3f3f3;padding:.1em .3em}.s{color:#888}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Detail}}</p>{{if .Hint}}<p>{{.Hint}}</p>{{end}}
<p class="s">{{.Status}} &middot; porthole</p></body></html>
`))

// page writes an error page: HTML for browsers, one line of text for
// everything else (curl, scripts). X-Porthole-Error names the cause for
// programs.
func (s *Server) page(w http.ResponseWriter, r *http.Request, status int, title, detail, hint, code string) {
	h := w.Header()
	h.Set("X-Porthole-Error", code)
	h.Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		pageTmpl.Execute(w, map[string]any{"Status": status, "Title": title, "Detail": detail, "Hint": hint})
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	if hint != "" {
		detail += " " + hint
	}
	fmt.Fprintf(w, "%d %s: %s\n", status, title, detail)
}
