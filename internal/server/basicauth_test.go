package server

import (
	"bytes"
	"reflect"
	"testing"

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
