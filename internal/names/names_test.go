package names

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidateLabel(t *testing.T) {
	good := []string{"a", "z9", "my-app", "quiet-otter-31", "xn--bcher-kva", strings.Repeat("a", MaxLabel), "0", "a-b-c"}
	for _, s := range good {
		if err := ValidateLabel(s); err != nil {
			t.Errorf("ValidateLabel(%q) = %v, want nil", s, err)
		}
	}
	bad := map[string]string{
		"":                       "empty",
		strings.Repeat("a", 64):  "64 characters",
		"-app":                   "start or end",
		"app-":                   "start or end",
		"My-App":                 `use "my-app"`,
		"my_app":                 "'_'",
		"my.app":                 "'.'",
		"café":                   "only a-z",
		"ab--cd":                 "IDNA",
		"a b":                    "' '",
		"app\x00":                "only a-z",
		strings.Repeat("x", 200): "limit is 63",
	}
	for s, want := range bad {
		err := ValidateLabel(s)
		if err == nil {
			t.Errorf("ValidateLabel(%q) = nil, want an error", s)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateLabel(%q) = %q, want it to mention %q", s, err, want)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ValidateLabel error for a long name is %d characters; long input must be truncated", len(err.Error()))
		}
	}
}

func TestValidateHostname(t *testing.T) {
	for _, h := range []string{"app.example.org", "a.b", "xn--bcher-kva.example"} {
		if err := ValidateHostname(h); err != nil {
			t.Errorf("ValidateHostname(%q) = %v", h, err)
		}
	}
	for h, want := range map[string]string{
		"":                                "empty",
		"localhost":                       "two labels",
		"app..example.org":                "empty",
		"App.example.org":                 "uppercase",
		"app.-example.org":                "start or end",
		strings.Repeat("a.", 127) + "com": "limit is 253",
	} {
		err := ValidateHostname(h)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateHostname(%q) = %v, want an error mentioning %q", h, err, want)
		}
	}
}

func TestReserved(t *testing.T) {
	s := NewReservedSet(DefaultReserved)
	for _, n := range []string{"www", "api", "admin"} {
		if !s.Has(n) {
			t.Errorf("%q should be reserved by default", n)
		}
	}
	if s.Has("quiet-otter-31") {
		t.Error("an ordinary name is reserved")
	}
	custom := NewReservedSet([]string{"Billing"})
	if !custom.Has("billing") || custom.Has("www") {
		t.Error("a configured list replaces the default and is case-folded")
	}
	for _, n := range DefaultReserved {
		if err := ValidateLabel(n); err != nil {
			t.Errorf("default reserved name %q is not a valid label: %v", n, err)
		}
	}
}

var readableRe = regexp.MustCompile(`^[a-z]+-[a-z]+-[0-9]{2,4}$`)
var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestGenerate(t *testing.T) {
	reserved := NewReservedSet(DefaultReserved)
	for _, tc := range []struct {
		s  Strategy
		re *regexp.Regexp
	}{{Readable, readableRe}, {"", readableRe}, {UUID, uuidRe}} {
		seen := make(map[string]bool)
		for range 2000 {
			n, err := Generate(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.re.MatchString(n) {
				t.Fatalf("strategy %q made %q", tc.s, n)
			}
			if err := ValidateLabel(n); err != nil {
				t.Fatalf("strategy %q made an invalid label %q: %v", tc.s, n, err)
			}
			if reserved.Has(n) {
				t.Fatalf("generated a reserved name %q", n)
			}
			seen[n] = true
		}
		// 2000 draws from about 2e8 readable names: a handful of
		// collisions at most; a broken generator repeats far more.
		if len(seen) < 1990 {
			t.Fatalf("strategy %q: only %d distinct names in 2000", tc.s, len(seen))
		}
	}
	if _, err := Generate(Specified); err == nil || !strings.Contains(err.Error(), "--subdomain") {
		t.Fatalf("Specified must ask the client for --subdomain, got %v", err)
	}
}

func TestWordLists(t *testing.T) {
	for _, list := range [][]string{adjectives, nouns} {
		seen := make(map[string]bool)
		for _, w := range list {
			if seen[w] {
				t.Errorf("word %q listed twice", w)
			}
			seen[w] = true
			if !regexp.MustCompile(`^[a-z]{2,10}$`).MatchString(w) {
				t.Errorf("word %q is not short lowercase a-z", w)
			}
		}
	}
	// The doc comment promises about 2e8 combinations.
	if n := len(adjectives) * len(nouns) * 9990; n < 1e8 {
		t.Errorf("only %d readable names", n)
	}
}

func TestParseStrategy(t *testing.T) {
	for in, want := range map[string]Strategy{"": Readable, "random": Readable, "uuid": UUID, "user": Specified} {
		got, err := ParseStrategy(in)
		if err != nil || got != want {
			t.Errorf("ParseStrategy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseStrategy("sequential"); err == nil {
		t.Error("an unknown strategy must be refused")
	}
}
