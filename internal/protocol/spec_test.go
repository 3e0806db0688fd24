package protocol

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// specTables reads spec.md and returns its tables by the heading above
// them: rows of trimmed cells, header and separator rows left out.
func specTables(t *testing.T) map[string][][]string {
	t.Helper()
	data, err := os.ReadFile("spec.md")
	if err != nil {
		t.Fatal(err)
	}
	tables := make(map[string][][]string)
	heading := ""
	inTable := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
			inTable = false
		case strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			if !inTable { // header row
				inTable = true
				continue
			}
			if strings.HasPrefix(cells[0], "---") {
				continue
			}
			tables[heading] = append(tables[heading], cells)
		default:
			inTable = false
		}
	}
	return tables
}

// pin says where spec.md documents a constant: the table, the row's first
// cell, and the second cell's expected value.
type pin struct{ table, key, value string }

func constPins() map[string]pin {
	hex := func(t MsgType) string { return fmt.Sprintf("0x%02x", byte(t)) }
	p := map[string]pin{
		"Version":             {"Constants", "Version", strconv.Itoa(Version)},
		"Subprotocol":         {"Constants", "Subprotocol", Subprotocol},
		"MaxMessageSize":      {"Constants", "MaxMessageSize", strconv.Itoa(MaxMessageSize)},
		"MaxStreamHeaderSize": {"Constants", "MaxStreamHeaderSize", strconv.Itoa(MaxStreamHeaderSize)},
		"frameHeaderSize":     {"Constants", "frameHeaderSize", strconv.Itoa(frameHeaderSize)},
		"streamHeaderVersion": {"Constants", "streamHeaderVersion", strconv.Itoa(streamHeaderVersion)},
		"RefusalContentType":  {"Constants", "RefusalContentType", RefusalContentType},
		"KindHTTP":            {"Constants", "KindHTTP", KindHTTP},
		"KindTCP":             {"Constants", "KindTCP", KindTCP},
		"MaxAccessRules":      {"Constants", "MaxAccessRules", strconv.Itoa(MaxAccessRules)},
		"PoolRoundRobin":      {"Constants", "PoolRoundRobin", PoolRoundRobin},
		"PoolLeastStreams":    {"Constants", "PoolLeastStreams", PoolLeastStreams},

		"TypeHello":   {"Message types", hex(TypeHello), "hello"},
		"TypeWelcome": {"Message types", hex(TypeWelcome), "welcome"},
		"TypeBind":    {"Message types", hex(TypeBind), "bind"},
		"TypeBound":   {"Message types", hex(TypeBound), "bound"},
		"TypeError":   {"Message types", hex(TypeError), "error"},
		"TypeUnbind":  {"Message types", hex(TypeUnbind), "unbind"},
		"TypePing":    {"Message types", hex(TypePing), "ping"},
		"TypePong":    {"Message types", hex(TypePong), "pong"},
		"TypeNotice":  {"Message types", hex(TypeNotice), "notice"},
		"TypeHealth":  {"Message types", hex(TypeHealth), "health"},
		"TypeGoAway":  {"Message types", hex(TypeGoAway), "go_away"},

		// The second column is whether the server sends the code as final.
		"CodeUnsupportedVersion": {"Error codes", string(CodeUnsupportedVersion), "final"},
		"CodeUnauthorized":       {"Error codes", string(CodeUnauthorized), "final"},
		"CodeForbidden":          {"Error codes", string(CodeForbidden), "final"},
		"CodeInvalidName":        {"Error codes", string(CodeInvalidName), "final"},
		"CodeNameReserved":       {"Error codes", string(CodeNameReserved), "final"},
		"CodeNameTaken":          {"Error codes", string(CodeNameTaken), "final"},
		"CodePortUnavailable":    {"Error codes", string(CodePortUnavailable), "final"},
		"CodeLimitExceeded":      {"Error codes", string(CodeLimitExceeded), "final"},
		"CodeRateLimited":        {"Error codes", string(CodeRateLimited), "retryable"},
		"CodeBadRequest":         {"Error codes", string(CodeBadRequest), "final"},
		"CodeShuttingDown":       {"Error codes", string(CodeShuttingDown), "retryable"},
		"CodeInternal":           {"Error codes", string(CodeInternal), "retryable"},

		"NoticeShutdown": {"Notice kinds", NoticeShutdown, "retryable"},
		"NoticeRevoked":  {"Notice kinds", NoticeRevoked, "final"},
		"NoticeKicked":   {"Notice kinds", NoticeKicked, "final"},
	}
	return p
}

// packageConsts lists every constant declared in the package's non-test
// files, so that a new constant cannot be added without a pin.
func packageConsts(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, s := range gd.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						names = append(names, n.Name)
					}
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// TestConst pins every constant of the package to spec.md, both ways: each
// constant is in its table with the documented value, and each row of those
// tables belongs to a constant.
func TestConst(t *testing.T) {
	tables := specTables(t)
	pins := constPins()
	for _, name := range packageConsts(t) {
		if _, ok := pins[name]; !ok {
			t.Errorf("constant %s is not pinned to spec.md: document it there and add it to constPins", name)
		}
	}
	covered := make(map[string]map[string]bool)
	for name, p := range pins {
		rows, ok := tables[p.table]
		if !ok {
			t.Fatalf("spec.md has no table under heading %q", p.table)
		}
		found := false
		for _, r := range rows {
			if len(r) >= 2 && r[0] == p.key {
				found = true
				if r[1] != p.value {
					t.Errorf("%s: spec.md %q row %s says %q, code says %q", name, p.table, p.key, r[1], p.value)
				}
			}
		}
		if !found {
			t.Errorf("%s: spec.md table %q has no row %q", name, p.table, p.key)
		}
		if covered[p.table] == nil {
			covered[p.table] = make(map[string]bool)
		}
		covered[p.table][p.key] = true
	}
	for table, keys := range covered {
		for _, r := range tables[table] {
			if !keys[r[0]] {
				t.Errorf("spec.md table %q documents %q, which no constant defines", table, r[0])
			}
		}
	}
}

// TestSpecMessageTable checks the message table against the decoder: every
// documented type decodes to a struct of that type whose JSON fields are
// all documented, and no type decodes that the table leaves out.
func TestSpecMessageTable(t *testing.T) {
	rows := specTables(t)["Message types"]
	documented := make(map[MsgType]bool)
	fieldRe := regexp.MustCompile("`([a-z_]+)`")
	for _, r := range rows {
		if len(r) != 4 {
			t.Fatalf("message row %q: want 4 cells", r)
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(r[0], "0x"), 16, 8)
		if err != nil {
			t.Fatalf("message row %q: type %q: %v", r, r[0], err)
		}
		mt := MsgType(v)
		documented[mt] = true
		m := newMessage(mt)
		if m == nil {
			t.Errorf("spec.md documents type %s (%s) but the decoder does not know it", r[0], r[1])
			continue
		}
		if m.Type() != mt {
			t.Errorf("type %s decodes to a %T that reports type %v", r[0], m, m.Type())
		}
		switch r[2] {
		case "client -> server", "server -> client", "either way":
		default:
			t.Errorf("type %s: direction %q is not one of the documented forms", r[0], r[2])
		}
		var inSpec []string
		for _, mm := range fieldRe.FindAllStringSubmatch(r[3], -1) {
			inSpec = append(inSpec, mm[1])
		}
		rt := reflect.TypeOf(m).Elem()
		for i := 0; i < rt.NumField(); i++ {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			if !slices.Contains(inSpec, tag) {
				t.Errorf("%s: field %q is not documented in spec.md", r[1], tag)
			}
		}
	}
	for v := 0; v < 256; v++ {
		if newMessage(MsgType(v)) != nil && !documented[MsgType(v)] {
			t.Errorf("type 0x%02x decodes but spec.md does not document it", v)
		}
	}
	// The stream header's fields are documented too.
	hdr := specTables(t)["Stream header"]
	rt := reflect.TypeOf(StreamHeader{})
	for i := 0; i < rt.NumField(); i++ {
		tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if !slices.ContainsFunc(hdr, func(r []string) bool { return r[0] == tag }) {
			t.Errorf("stream header field %q is not documented in spec.md", tag)
		}
	}
}
