package dashboard

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/porthole/porthole/internal/inspect"
)

// ourSGR matches the color sequences Line.String writes itself.
var ourSGR = regexp.MustCompile("\x1b\\[[0-9]+m")

// FuzzRequestLine renders a request row from what a visitor controls
// (method, path) and the app answers (status) at any width. The row must
// fit the width and carry no control character of its own: a path must
// not move the cursor, clear the screen or change colors.
func FuzzRequestLine(f *testing.F) {
	f.Add("GET", "/api/items?id=1", 200, 0.0, uint8(80), true)
	f.Add("POST", "/\x1b[2J\x1b[31mred", 502, 12.5, uint8(40), true)
	f.Add("DELETE", "/\r\n\t\x07\x7f\u009b6n", 0, 0.0, uint8(1), false)
	f.Add("VERYLONGMETHOD", strings.Repeat("/ü", 200), 99, -1.0, uint8(255), true)
	f.Add("", "\xff\xfe", 999, 1e300, uint8(0), false)
	f.Fuzz(func(t *testing.T, method, path string, status int, ms float64, w uint8, color bool) {
		r := inspect.Summary{Method: method, Path: path, Status: status, Done: status != 0, DurationMS: ms, Start: time.Unix(0, 0)}
		out := requestLine(r, int(w)).String(int(w), color)
		visible := ourSGR.ReplaceAllString(out, "")
		if !color && visible != out {
			t.Fatalf("escape sequences without color: %q", out)
		}
		if n := utf8.RuneCountInString(visible); n > int(w) {
			t.Fatalf("%d columns at width %d: %q", n, w, visible)
		}
		for _, c := range visible {
			if printable(c) != c {
				t.Fatalf("control character %U shown: %q", c, visible)
			}
		}
	})
}
