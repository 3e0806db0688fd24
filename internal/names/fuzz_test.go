package names

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// label is RFC 1123's host label written independently of ValidateLabel:
// 1-63 of a-z, 0-9 and '-', no '-' at either end.
var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// labelOK is the whole rule: also no "--" in the third and fourth
// positions except for IDNA's "xn--".
func labelOK(s string) bool {
	return label.MatchString(s) && (len(s) < 4 || s[2:4] != "--" || strings.HasPrefix(s, "xn--"))
}

// FuzzValidateLabel: ValidateLabel accepts exactly the labels of the
// rule above, and what it accepts is a usable, lowercase host that a URL
// carries unchanged.
func FuzzValidateLabel(f *testing.F) {
	for _, s := range []string{"myapp", "a", "a-b", "-a", "a-", "UPPER", "xn--bcher-kva", "ab--cd", "a.b", "ümlaut",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "", "0", "a_b", "a b", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateLabel(s)
		if (err == nil) != labelOK(s) {
			t.Fatalf("ValidateLabel(%q) = %v, the rule says %v", s, err, labelOK(s))
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		u, perr := url.Parse("http://" + s + ".example.com/")
		if perr != nil || u.Hostname() != s+".example.com" {
			t.Fatalf("label %q does not survive a URL: %v %v", s, u, perr)
		}
		if err := ValidateHostname(s + ".example.com"); err != nil {
			t.Fatalf("a valid label makes an invalid hostname: %v", err)
		}
	})
}

// FuzzValidateHostname: ValidateHostname accepts exactly the names of at
// most 253 characters made of two or more valid labels.
func FuzzValidateHostname(f *testing.F) {
	for _, s := range []string{"app.example.org", "a.b", "localhost", "app.example.org.", ".example.org", "a..b",
		"APP.example.org", "xn--bcher-kva.example", "a-.b", strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127) + "a", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		labels := strings.Split(s, ".")
		want := len(s) <= 253 && len(labels) >= 2
		for _, l := range labels {
			want = want && labelOK(l)
		}
		err := ValidateHostname(s)
		if (err == nil) != want {
			t.Fatalf("ValidateHostname(%q) = %v, the rule says %v", s, err, want)
		}
		if err == nil {
			if u, perr := url.Parse("https://" + s + ":443/"); perr != nil || u.Hostname() != s {
				t.Fatalf("hostname %q does not survive a URL: %v %v", s, u, perr)
			}
		}
	})
}

// FuzzGenerate: a strategy name either is refused or names a strategy
// that parses to itself, and whose generated names are valid labels and
// not reserved by default (two UUIDs are also never alike).
func FuzzGenerate(f *testing.F) {
	for _, s := range []string{"random", "uuid", "user", "", "RANDOM", "words"} {
		f.Add(s)
	}
	reserved := NewReservedSet(DefaultReserved)
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseStrategy(s)
		if err != nil {
			return
		}
		if again, err := ParseStrategy(string(st)); err != nil || again != st {
			t.Fatalf("strategy %q parses to %q, which parses to %q, %v", s, st, again, err)
		}
		a, errA := Generate(st)
		b, errB := Generate(st)
		if st == Specified {
			if errA == nil || errB == nil {
				t.Fatalf("strategy %q generated %q", st, a)
			}
			return
		}
		if errA != nil || errB != nil {
			t.Fatalf("strategy %q: %v %v", st, errA, errB)
		}
		for _, n := range []string{a, b} {
			if err := ValidateLabel(n); err != nil {
				t.Fatalf("generated an invalid name: %v", err)
			}
			if reserved.Has(n) {
				t.Fatalf("generated the reserved name %q", n)
			}
		}
		if st == UUID && a == b {
			t.Fatalf("two UUIDs alike: %q", a)
		}
	})
}
