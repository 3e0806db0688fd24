package inspect

import "bytes"

// maxIndented bounds the pretty-printed form of a JSON body of n bytes.
// Indentation grows with nesting: 20 KB of "[[[...]]]" indents to 200 MB,
// so a visitor could make every view of its request cost the client that
// much. Deeper bodies are shown as plain text instead.
func maxIndented(n int) int { return 8*n + 1<<20 }

// indentedSize returns the length of json.Indent(dst, p, "", "  ") for
// valid JSON p without building it (for other input, some number).
func indentedSize(p []byte) int {
	n, depth := 0, 0
	inString, escaped, opened := false, false, false
	// json.Indent drops leading white space and keeps trailing.
	n += len(p) - len(bytes.TrimRight(p, " \t\r\n"))
	for _, c := range bytes.TrimRight(p, " \t\r\n") {
		if inString {
			n++
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			continue
		}
		if opened && c != '}' && c != ']' {
			n += 1 + 2*depth // the line break and indent after an opener
			opened = false
		}
		switch c {
		case '"':
			inString = true
			n++
		case '{', '[':
			depth++
			opened = true
			n++
		case '}', ']':
			depth--
			if opened { // empty: stays "{}" or "[]"
				opened = false
				n++
				continue
			}
			n += 1 + 2*depth + 1
		case ',':
			n += 1 + 1 + 2*depth
		case ':':
			n += 2
		default:
			n++
		}
	}
	return n
}
