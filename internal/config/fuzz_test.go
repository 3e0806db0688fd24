package config

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// fuzzSample has a field of each kind the configuration files use.
type fuzzSample struct {
	Name    string                `toml:"name"`
	Port    int                   `toml:"port"`
	Rate    float64               `toml:"rate"`
	On      bool                  `toml:"on"`
	Timeout Duration              `toml:"timeout"`
	List    []string              `toml:"list"`
	Table   fuzzTable             `toml:"table"`
	Tables  map[string]fuzzSample `toml:"tables"`
}

type fuzzTable struct {
	Every Duration `toml:"every"`
	Max   int64    `toml:"max"`
}

// FuzzDecode: strict decoding of any bytes either succeeds or fails with
// an *Error that has a message and, when it names a line, a line of the
// file; what it decodes writes out and reads back the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("name = \"a\"\nport = 8080\nrate = 1.5\non = true\ntimeout = \"10s\"\nlist = [\"x\", \"y\"]\n[table]\nevery = \"1m30s\"\nmax = 9\n[tables.one]\nport = 1\n"))
	f.Add([]byte("unknown = 1\n"))
	f.Add([]byte("[table]\nunknown = 1\n"))
	f.Add([]byte("timeout = \"soon\"\n"))
	f.Add([]byte("timeout = 10\n"))
	f.Add([]byte("port = \"80\"\n"))
	f.Add([]byte("port = 99999999999999999999\n"))
	f.Add([]byte("name = \"a\"\nname = \"b\"\n"))
	f.Add([]byte("[tables.x.tables.y]\non = false\n"))
	f.Add([]byte("list = [\"a\",\n"))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzSample
		err := Decode("f.toml", data, &v)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Msg == "" || ce.File != "f.toml" || ce.Line < 0 || ce.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("decode error %#v", err)
			}
			return
		}
		out, err := toml.Marshal(v)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", v, err)
		}
		var again fuzzSample
		if err := Decode("again.toml", out, &again); err != nil {
			t.Fatalf("%+v written out does not read back: %v\n%s", v, err, out)
		}
		if out2, _ := toml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("read back differently:\n%s\n---\n%s", out, out2)
		}
	})
}

// FuzzDuration: a duration either is refused or prints in a form that
// reads back to the same value.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"10s", "1m30s", "1.5h", "-3ms", "0", "300", "1d", "", "9223372036854775807ns", "1e3s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if want, _ := time.ParseDuration(s); d.D() != want {
			t.Fatalf("%q read as %v, time.ParseDuration says %v", s, d.D(), want)
		}
		b, _ := d.MarshalText()
		var again Duration
		if err := again.Set(string(b)); err != nil || again != d {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, d.D(), b, again.D(), err)
		}
	})
}
