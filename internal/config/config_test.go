package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type sample struct {
	Name    string   `toml:"name"`
	Port    int      `toml:"port"`
	Debug   bool     `toml:"debug"`
	Servers []string `toml:"servers"`
	Timeout Duration `toml:"timeout"`
	Inner   struct {
		Grace Duration `toml:"grace"`
		Mode  string   `toml:"mode"`
	} `toml:"inner"`
	Tunnels map[string]struct {
		Addr string `toml:"addr"`
	} `toml:"tunnels"`
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecodeStrict(t *testing.T) {
	var v sample
	err := Decode("good.toml", []byte(`
name = "x"
port = 3
timeout = "1m30s"
[inner]
grace = "5s"
[tunnels.web]
addr = "3000"
`), &v)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "x" || v.Port != 3 || v.Timeout.D() != 90*time.Second || v.Inner.Grace.D() != 5*time.Second || v.Tunnels["web"].Addr != "3000" {
		t.Fatalf("decoded %+v", v)
	}
}

func TestDecodeUnknownKeyNamesLine(t *testing.T) {
	tests := []struct {
		name, body string
		line       int
		key        string
	}{
		{"top level", "name = \"x\"\nprot = 3\n", 2, "prot"},
		{"nested table", "name = \"x\"\n\n[inner]\nmode = \"a\"\ngarce = \"5s\"\n", 5, "inner.garce"},
		{"in a map entry", "[tunnels.web]\naddr = \"1\"\nproto = \"http\"\n", 3, "tunnels.web.proto"},
		{"unknown table", "port = 1\n[limits]\nburst = 2\n", 2, "limits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v sample
			err := Decode("f.toml", []byte(tc.body), &v)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v (%T), want *config.Error", err, err)
			}
			if ce.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.key) || !strings.HasPrefix(err.Error(), "f.toml:") {
				t.Errorf("error %q should start with the file and name key %q", err, tc.key)
			}
		})
	}
}

func TestDecodeBadValueNamesLine(t *testing.T) {
	for _, tc := range []struct {
		body string
		line int
		want string
	}{
		{"name = \"x\"\n\nport = \"eighty\"\n", 3, ""},
		{"name = \"x\"\ntimeout = \"10 parsecs\"\n", 2, "10s"},
		{"name = \"x\"\nport = \n", 2, ""},
		{"[inner\n", 1, ""},
	} {
		var v sample
		err := Decode("f.toml", []byte(tc.body), &v)
		var ce *Error
		if !errors.As(err, &ce) || ce.Line != tc.line {
			t.Errorf("%q: got %v, want an error on line %d", tc.body, err, tc.line)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %q should mention %q", tc.body, err, tc.want)
		}
	}
}

func TestDecodeFileMissing(t *testing.T) {
	var v sample
	if err := DecodeFile(filepath.Join(t.TempDir(), "nope.toml"), &v); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func flags(v *sample) *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.StringVar(&v.Name, "name", v.Name, "")
	fs.IntVar(&v.Port, "port", v.Port, "")
	fs.BoolVar(&v.Debug, "debug", v.Debug, "")
	fs.StringArrayVar(&v.Servers, "server", v.Servers, "")
	fs.Var(&v.Timeout, "timeout", "")
	fs.Var(&v.Inner.Grace, "grace", "")
	return fs
}

// TestLoadWithFlagsPrecedence: flags given on the command line beat the
// file, the file beats defaults, defaults stay where neither says anything.
func TestLoadWithFlagsPrecedence(t *testing.T) {
	path := writeFile(t, `
name = "from-file"
port = 1111
debug = true
servers = ["ws://file-a", "ws://file-b"]
timeout = "1m"
[inner]
grace = "7s"
mode = "file"
`)
	v := sample{Name: "default", Port: 80, Timeout: Duration(time.Second)}
	v.Inner.Mode = "default"
	fs := flags(&v)
	if err := fs.Parse([]string{"--port", "2222", "--server", "ws://flag", "--debug=false", "--grace", "3s"}); err != nil {
		t.Fatal(err)
	}
	if err := LoadWithFlags(fs, path, &v); err != nil {
		t.Fatal(err)
	}
	if v.Port != 2222 {
		t.Errorf("port %d: the flag must beat the file", v.Port)
	}
	if len(v.Servers) != 1 || v.Servers[0] != "ws://flag" {
		t.Errorf("servers %q: a repeated flag must replace the file's list", v.Servers)
	}
	if v.Debug {
		t.Error("--debug=false must beat debug = true in the file")
	}
	if v.Inner.Grace.D() != 3*time.Second {
		t.Errorf("grace %v: a duration flag must beat the file", v.Inner.Grace.D())
	}
	if v.Name != "from-file" || v.Timeout.D() != time.Minute || v.Inner.Mode != "file" {
		t.Errorf("file values must beat defaults: %+v", v)
	}
}

func TestLoadWithFlagsNoFile(t *testing.T) {
	v := sample{Name: "default", Port: 80}
	fs := flags(&v)
	fs.Parse([]string{"--name", "flag"})
	if err := LoadWithFlags(fs, "", &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "flag" || v.Port != 80 {
		t.Fatalf("%+v", v)
	}
}

func TestLoadWithFlagsBadFile(t *testing.T) {
	path := writeFile(t, "port = 1\nbogus = 2\n")
	v := sample{}
	fs := flags(&v)
	fs.Parse(nil)
	err := LoadWithFlags(fs, path, &v)
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 2 || ce.File != path {
		t.Fatalf("got %v, want an error at %s:2", err, path)
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.Set("250ms"); err != nil || d.D() != 250*time.Millisecond || d.String() != "250ms" || d.Type() != "duration" {
		t.Fatalf("Set: %v %v", d, err)
	}
	if err := d.Set("soon"); err == nil {
		t.Fatal("a bad duration must be refused")
	}
	b, _ := Duration(90 * time.Second).MarshalText()
	if string(b) != "1m30s" {
		t.Fatalf("MarshalText %q", b)
	}
}
