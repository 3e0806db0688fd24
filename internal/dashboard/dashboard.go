// Package dashboard is the client's full-screen terminal view, shown when
// stdout is a terminal: session status, server, latency, each Forwarding
// line, connection counts, the latest requests with status codes and
// durations, reconnect attempts with the next retry time, and the latest
// warnings from the log.
//
// It owns only the drawing. The state comes from package client (Status,
// Events) and the requests from package inspect; cmd/porthole decides
// whether stdout is a terminal and wires the three together.
//
// It writes plain ANSI escape sequences (alternate screen, cursor home,
// erase line) instead of using a TUI framework such as bubbletea. The view
// is output only: it never reads the keyboard, so the terminal stays in
// cooked mode and Ctrl+C stays the ordinary SIGINT that every other porthole
// command already handles; a framework would put the terminal in raw mode,
// take over signals and bring a dozen modules for a screen that redraws a
// few lines four times a second.
package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/inspect"
)

// Options are the dashboard's sources and terminal.
type Options struct {
	// Out is the terminal.
	Out io.Writer
	// Status returns the client's state; required.
	Status func() *client.Status
	// Requests returns the latest n requests, newest first; nil hides the
	// request list.
	Requests func(n int) []inspect.Summary
	// InspectURL is the request inspector's address, when it runs.
	InspectURL string
	// Size returns the terminal's width and height; nil means 80x24.
	Size func() (w, h int, err error)
	// Color turns on ANSI colors.
	Color bool
	// Interval between redraws; 0 means 250 ms.
	Interval time.Duration
	// Clock is time.Now unless a test sets it.
	Clock func() time.Time
}

// Dashboard draws the client's state on a terminal until its context ends.
type Dashboard struct {
	o     Options
	dirty chan struct{}

	mu     sync.Mutex
	events []eventLine // latest connection events, oldest first
	logs   []string    // latest log lines, oldest first
	part   []byte      // a log line not yet ended
}

type eventLine struct {
	at   time.Time
	text string
	kind client.EventKind
}

const (
	keepEvents = 6
	keepLogs   = 6
)

// New returns a dashboard; Run draws it.
func New(o Options) *Dashboard {
	if o.Interval == 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Dashboard{o: o, dirty: make(chan struct{}, 1)}
}

// SetSources sets where the state comes from, for callers that create the
// dashboard before the client (its Event method is the client's OnEvent).
// Call it before Run.
func (d *Dashboard) SetSources(status func() *client.Status, requests func(n int) []inspect.Summary, inspectURL string) {
	d.o.Status, d.o.Requests, d.o.InspectURL = status, requests, inspectURL
}

// Event records a connection event to show and asks for a redraw. It is
// meant as client.Deps.OnEvent and does not block.
func (d *Dashboard) Event(e client.Event) {
	now := d.o.Clock()
	var text string
	switch e.Kind {
	case client.EventConnected:
		text = "connected to " + e.Server
	case client.EventForwarding:
		text = "forwarding " + e.Tunnel.URL + " -> " + e.Tunnel.Target
	case client.EventDisconnected:
		text = "disconnected: " + errText(e.Err)
	case client.EventRetrying:
		text = fmt.Sprintf("reconnect attempt %d at %s (in %s)", e.Attempt, now.Add(e.RetryIn).Format("15:04:05"), roundDur(e.RetryIn))
	}
	d.mu.Lock()
	d.events = append(d.events, eventLine{at: now, text: text, kind: e.Kind})
	if len(d.events) > keepEvents {
		d.events = d.events[len(d.events)-keepEvents:]
	}
	d.mu.Unlock()
	d.poke()
}

// LogWriter returns a writer for the process logger: its latest lines are
// shown at the bottom of the screen instead of scrolling through it.
func (d *Dashboard) LogWriter() io.Writer { return logWriter{d} }

type logWriter struct{ d *Dashboard }

func (w logWriter) Write(p []byte) (int, error) {
	d := w.d
	d.mu.Lock()
	d.part = append(d.part, p...)
	for {
		i := bytes.IndexByte(d.part, '\n')
		if i < 0 {
			break
		}
		d.logs = append(d.logs, string(d.part[:i]))
		d.part = d.part[i+1:]
	}
	if len(d.part) > 4096 {
		d.part = d.part[:0]
	}
	if len(d.logs) > keepLogs {
		d.logs = d.logs[len(d.logs)-keepLogs:]
	}
	d.mu.Unlock()
	d.poke()
	return len(p), nil
}

func (d *Dashboard) poke() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// Escape sequences (ECMA-48 and the xterm alternate screen), understood by
// every terminal emulator in use.
const (
	enterAlt   = "\x1b[?1049h"
	leaveAlt   = "\x1b[?1049l"
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
	home       = "\x1b[H"
	eraseLine  = "\x1b[K"
	eraseBelow = "\x1b[J"
)

// Run draws the dashboard until ctx ends, then gives the terminal back as
// it was (the main screen, with what was on it before).
func (d *Dashboard) Run(ctx context.Context) {
	io.WriteString(d.o.Out, enterAlt+hideCursor)
	defer io.WriteString(d.o.Out, eraseBelow+showCursor+leaveAlt)
	tick := time.NewTicker(d.o.Interval)
	defer tick.Stop()
	var last []byte
	for {
		w, h := 80, 24
		if d.o.Size != nil {
			if sw, sh, err := d.o.Size(); err == nil && sw > 0 && sh > 0 {
				w, h = sw, sh
			}
		}
		frame := d.frame(w, h)
		// Redraw only on change: a terminal over SSH pays for every byte.
		if !bytes.Equal(frame, last) {
			d.o.Out.Write(frame)
			last = frame
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.dirty:
		}
	}
}

func (d *Dashboard) frame(w, h int) []byte {
	lines := d.Render(w, h)
	var b bytes.Buffer
	b.WriteString(home)
	for i, l := range lines {
		b.WriteString(l.String(w, d.o.Color))
		b.WriteString(eraseLine)
		if i < len(lines)-1 {
			// Cursor movement, not a newline: the last row must not scroll.
			b.WriteString("\r\n")
		}
	}
	b.WriteString(eraseBelow)
	return b.Bytes()
}

// Render lays out the screen as at most h lines of at most w columns.
func (d *Dashboard) Render(w, h int) []Line {
	st := d.o.Status()
	now := d.o.Clock()
	var out []Line
	add := func(spans ...Span) { out = append(out, Line(spans)) }
	field := func(name string, spans ...Span) {
		add(append([]Span{{Text: fmt.Sprintf("%-18s", name)}}, spans...)...)
	}

	add(Span{Text: "porthole", Style: bold}, Span{Text: strings.Repeat(" ", max(1, w-8-len("(Ctrl+C to quit)")))}, Span{Text: "(Ctrl+C to quit)", Style: dim})
	add()
	stateSpans := []Span{{Text: st.State, Style: stateStyle(st.State)}}
	if st.State == client.StateReconnecting && st.NextRetry != "" {
		if at, err := time.Parse(time.RFC3339Nano, st.NextRetry); err == nil {
			in := at.Sub(now)
			when := "now"
			if in > 0 {
				when = "in " + roundDur(in)
			}
			stateSpans = append(stateSpans, Span{Text: fmt.Sprintf(" (attempt %d, next retry %s, %s)", st.RetryAttempt, at.Local().Format("15:04:05"), when)})
		}
	}
	field("Session Status", stateSpans...)
	field("Server", Span{Text: orDash(st.Server)})
	lat := "-"
	if st.LatencyMS > 0 {
		lat = fmt.Sprintf("%.1f ms", st.LatencyMS)
	}
	field("Latency", Span{Text: lat})
	field("Uptime", Span{Text: st.Uptime})
	field("Reconnects", Span{Text: fmt.Sprint(st.Reconnects)})
	if st.LastError != "" && st.State != client.StateOnline {
		field("Last Error", Span{Text: st.LastError, Style: red})
	}
	if d.o.InspectURL != "" {
		field("Web Interface", Span{Text: d.o.InspectURL})
	}
	for _, t := range st.Tunnels {
		url := t.URL
		if url == "" {
			url = "(waiting for the server)"
		}
		field("Forwarding", Span{Text: url, Style: bold}, Span{Text: " -> " + t.Target})
	}
	add()
	add(Span{Text: fmt.Sprintf("%-18s%-10s%-10s%-10s%-12s%-12s", "Connections", "total", "open", "errors", "in", "out"), Style: dim})
	for _, t := range st.Tunnels {
		add(Span{Text: fmt.Sprintf("  %-16s%-10d%-10d%-10d%-12s%-12s", clip(t.Name, 15), t.Requests, t.OpenConns, t.Errors, Bytes(t.BytesIn), Bytes(t.BytesOut))})
	}

	d.mu.Lock()
	events := append([]eventLine(nil), d.events...)
	logs := append([]string(nil), d.logs...)
	d.mu.Unlock()

	// What follows shares the rows that are left: requests first, then
	// connection events, then log lines.
	var tail []Line
	if len(events) > 0 {
		tail = append(tail, Line{}, Line{{Text: "Events", Style: bold}})
		for _, e := range events {
			tail = append(tail, Line{{Text: e.at.Local().Format("15:04:05") + "  ", Style: dim}, {Text: e.text, Style: eventStyle(e.kind)}})
		}
	}
	if len(logs) > 0 {
		tail = append(tail, Line{}, Line{{Text: "Log", Style: bold}})
		for _, l := range logs {
			tail = append(tail, Line{{Text: l, Style: dim}})
		}
	}

	if d.o.Requests != nil {
		add()
		add(Span{Text: "HTTP Requests", Style: bold})
		add(Span{Text: "-------------"})
		room := h - len(out) - len(tail)
		if room < 3 {
			// A small window: requests matter more than old events.
			tail = nil
			room = h - len(out)
		}
		reqs := d.o.Requests(max(room, 0))
		if len(reqs) == 0 && room > 0 {
			add(Span{Text: "no requests yet", Style: dim})
		}
		for _, r := range reqs {
			out = append(out, requestLine(r, w))
		}
	}
	out = append(out, tail...)
	if len(out) > h {
		out = out[:h]
	}
	return out
}

func requestLine(r inspect.Summary, w int) Line {
	status := "..."
	style := dim
	switch {
	case r.Status != 0:
		status = fmt.Sprintf("%d %s", r.Status, http.StatusText(r.Status))
		style = statusStyle(r.Status)
	case r.Done:
		status = "no response"
		style = red
	}
	dur := "..."
	if r.Done {
		dur = fmtMS(r.DurationMS)
	}
	// Path gets whatever the fixed columns leave.
	pathW := max(10, w-10-8-26-10-2)
	path := r.Path
	if r.ReplayOf != 0 {
		path += " (replay)"
	}
	return Line{
		{Text: r.Start.Local().Format("15:04:05") + "  ", Style: dim},
		{Text: fmt.Sprintf("%-8s", clip(r.Method, 7))},
		{Text: fmt.Sprintf("%-*s ", pathW, clip(path, pathW))},
		{Text: fmt.Sprintf("%-26s", clip(status, 25)), Style: style},
		{Text: fmt.Sprintf("%10s", dur)},
	}
}

// Style is a text attribute.
type Style int

const (
	plain Style = iota
	bold
	dim
	red
	green
	yellow
	cyan
)

var sgr = map[Style]string{bold: "1", dim: "2", red: "31", green: "32", yellow: "33", cyan: "36"}

// Span is text with one style.
type Span struct {
	Text  string
	Style Style
}

// Line is one screen row.
type Line []Span

// Plain returns the row's text without styles.
func (l Line) Plain() string {
	var b strings.Builder
	for _, s := range l {
		b.WriteString(s.Text)
	}
	return b.String()
}

// String renders the row cut to w columns, with colors when color is on.
// It counts one column per rune, which holds for the text porthole shows
// (URLs, paths, numbers, log lines) save rare wide characters in paths.
func (l Line) String(w int, color bool) string {
	var b strings.Builder
	left := w
	for _, s := range l {
		if left <= 0 {
			break
		}
		t := strings.Map(printable, s.Text)
		if n := utf8.RuneCountInString(t); n > left {
			t = string([]rune(t)[:left])
		}
		left -= utf8.RuneCountInString(t)
		if color && s.Style != plain {
			b.WriteString("\x1b[" + sgr[s.Style] + "m" + t + "\x1b[0m")
		} else {
			b.WriteString(t)
		}
	}
	return b.String()
}

// printable keeps control characters that a request path or log line
// might carry from moving the cursor or changing colors.
func printable(r rune) rune {
	if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
		return '?'
	}
	return r
}

func stateStyle(s string) Style {
	switch s {
	case client.StateOnline:
		return green
	case client.StateStopped:
		return red
	}
	return yellow
}

func statusStyle(code int) Style {
	switch {
	case code >= 500:
		return red
	case code >= 400:
		return yellow
	case code >= 300:
		return cyan
	}
	return green
}

func eventStyle(k client.EventKind) Style {
	switch k {
	case client.EventDisconnected:
		return red
	case client.EventRetrying:
		return yellow
	}
	return plain
}

func errText(err error) string {
	if err == nil {
		return "(no reason given)"
	}
	return err.Error()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return string([]rune(s)[:n])
	}
	return string([]rune(s)[:n-1]) + "…"
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func fmtMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// Bytes formats a byte count for people: 512 B, 1.5 KiB, 3.2 MiB. The
// status command and the admin CLI use it too.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
