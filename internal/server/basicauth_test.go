package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/porthole/porthole/internal/limits"
	"github.com/porthole/porthole/internal/protocol"
)

// TestAccessKeepsNoPassword walks everything a compiled access rule set
// holds, through pointers, slices, maps and unexported fields, and finds
// neither a password nor the USER:PASSWORD entry in it.
func TestAccessKeepsNoPassword(t *testing.T) {
	const pw = "S3cret-pass-4711"
	a := mustAccess(t, protocol.Access{BasicAuth: []string{"alice:" + pw}})
	// A request that passed fills the cache of successes, too.
	if d := a.check(withBasic(visit("192.0.2.1:1"), "alice", pw)); d != nil {
		t.Fatalf("the right password was refused: %+v", d)
	}
	seen := map[uintptr]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if v.IsNil() {
				return
			}
			if v.Kind() == reflect.Pointer {
				if seen[v.Pointer()] {
					return
				}
				seen[v.Pointer()] = true
			}
			walk(v.Elem(), path)
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		case reflect.Slice, reflect.Array:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				b := make([]byte, v.Len())
				for i := range b {
					b[i] = byte(v.Index(i).Uint())
				}
				if bytes.Contains(b, []byte(pw)) {
					t.Errorf("%s holds the password", path)
				}
				return
			}
			for i := range v.Len() {
				walk(v.Index(i), path+"[]")
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				walk(it.Key(), path+"{key}")
				walk(it.Value(), path+"{}")
			}
		case reflect.String:
			if bytes.Contains([]byte(v.String()), []byte(pw)) {
				t.Errorf("%s holds the password", path)
			}
		}
	}
	walk(reflect.ValueOf(a), "access")
	if len(seen) == 0 {
		t.Fatal("walked nothing")
	}
}

// Hooks for the attack tests of package server_test, which run a real
// server, client and app: they let a test send a request with any
// RemoteAddr (addresses of an IPv6 /64, a spray of fresh addresses)
// through the public handler, and look at the throttle's table.

// ServePublicForTest serves r as the public listener would.
func (s *Server) ServePublicForTest(w http.ResponseWriter, r *http.Request) { s.servePublic(w, r) }

// AccessFailuresForTest is the table that throttles wrong passwords.
func (s *Server) AccessFailuresForTest() *limits.IPTable { return s.accessFailures }

// CredHashesForTest counts the argon2id hashes computed so far.
func CredHashesForTest() int64 { return credHashes.Load() }

// CheapHashesForTest makes argon2id cheap until cleanup, for tests that
// check a password many times.
func CheapHashesForTest(t testing.TB) {
	tm, m := argonTime, argonMemory
	argonTime, argonMemory = 1, 8
	t.Cleanup(func() { argonTime, argonMemory = tm, m })
}

// TestAccessPrintsNoPassword: neither %v nor %#v of the compiled rules,
// with a success in the cache, shows the password or the entry.
func TestAccessPrintsNoPassword(t *testing.T) {
	const pw = "Print-me-not-93b1"
	a := mustAccess(t, protocol.Access{BasicAuth: []string{"alice:" + pw, "bob:" + pw + "2"}})
	if d := a.check(withBasic(visit("192.0.2.1:1"), "alice", pw)); d != nil {
		t.Fatalf("the right password was refused: %+v", d)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		out := fmt.Sprintf(format, a)
		b64 := base64.StdEncoding.EncodeToString([]byte("alice:" + pw))
		hexed := fmt.Sprintf("%x", pw)
		if strings.Contains(out, pw) || strings.Contains(out, b64) || strings.Contains(out, hexed) {
			t.Errorf("%s of the compiled rules shows the password: %.200s", format, out)
		}
	}
}

// TestCredCacheBounded: the cache of successes never holds more than
// credCacheSize entries, however many distinct credentials pass, and an
// entry past its age is gone.
func TestCredCacheBounded(t *testing.T) {
	var c credCache
	now := time.Now()
	for i := range 10 * credCacheSize {
		c.add(cacheKey(fmt.Sprintf("user%d:pw", i)), now)
		if len(c.m) > credCacheSize {
			t.Fatalf("after %d successes the cache holds %d entries, over %d", i+1, len(c.m), credCacheSize)
		}
	}
	k := cacheKey("old:pw")
	c.add(k, now)
	if !c.hit(k, now.Add(credCacheTTL-time.Second)) {
		t.Fatal("a fresh success was not remembered")
	}
	if c.hit(k, now.Add(credCacheTTL+time.Second)) {
		t.Fatal("a success older than the cache's age still counts")
	}
	// Through compiled rules: with the most entries a bind may have,
	// the cache stays within its bound.
	CheapHashesForTest(t)
	var creds []string
	for i := range protocol.MaxAccessRules {
		creds = append(creds, fmt.Sprintf("u%d:p%d", i, i))
	}
	a := mustAccess(t, protocol.Access{BasicAuth: creds})
	for i := range protocol.MaxAccessRules {
		if d := a.check(withBasic(visit("192.0.2.1:1"), fmt.Sprintf("u%d", i), fmt.Sprintf("p%d", i))); d != nil {
			t.Fatalf("entry %d refused: %+v", i, d)
		}
	}
	if n := len(a.verified.m); n > credCacheSize {
		t.Fatalf("the tunnel's cache holds %d entries, over %d", n, credCacheSize)
	}
}

// TestWrongPasswordAfterRightOne: a success in the cache admits only the
// very credential that passed; a wrong password after it is hashed and
// refused, and the right one again costs no hash.
func TestWrongPasswordAfterRightOne(t *testing.T) {
	a := mustAccess(t, protocol.Access{BasicAuth: []string{"alice:right-pw"}})
	const ip = "192.0.2.1:1"
	wantDenial(t, "right", a, withBasic(visit(ip), "alice", "right-pw"), 0, "")
	for _, wrong := range []string{"wrong-pw", "right-pw ", "right-p", "", "RIGHT-PW"} {
		before := credHashes.Load()
		wantDenial(t, "wrong after right: "+wrong, a, withBasic(visit(ip), "alice", wrong), http.StatusUnauthorized, codeBasicFailed)
		if credHashes.Load() == before {
			t.Fatalf("the wrong password %q was decided without a hash", wrong)
		}
	}
	wantDenial(t, "another user with the right password", a, withBasic(visit(ip), "bob", "right-pw"), http.StatusUnauthorized, codeBasicFailed)
	before := credHashes.Load()
	wantDenial(t, "right again", a, withBasic(visit(ip), "alice", "right-pw"), 0, "")
	if credHashes.Load() != before {
		t.Fatal("the right password, already verified, was hashed again")
	}
}
