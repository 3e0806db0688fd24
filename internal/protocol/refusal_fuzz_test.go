package protocol

import (
	"net/http/httptest"
	"reflect"
	"testing"
)

// FuzzDecodeRefusal feeds arbitrary bytes to the client's reader of a
// refused handshake's body (the server's, or anything a proxy in between
// answers). It either refuses them or returns an error with a code, which
// WriteRefusal writes back in a form that decodes to the same error.
func FuzzDecodeRefusal(f *testing.F) {
	f.Add([]byte(`{"code":"rate_limited","message":"too many connection attempts from your address; retry later","final":false,"retry_after_ms":2000}`))
	f.Add([]byte(`{"code":"unauthorized","message":"bad key","final":true}`))
	f.Add([]byte(`{"code":""}`))
	f.Add([]byte(`{"code":"x","retry_after_ms":-5}`))
	f.Add([]byte(`{"code":"x","retry_after_ms":1e30}`))
	f.Add([]byte(`{"code":"x","message":"\ud800"}`))
	f.Add([]byte("<html>502 Bad Gateway</html>"))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		e, ok := DecodeRefusal(body)
		if !ok {
			if e != nil {
				t.Fatalf("refused, yet returned %+v", e)
			}
			return
		}
		if e == nil || e.Code == "" {
			t.Fatalf("accepted %q as %+v", body, e)
		}
		rec := httptest.NewRecorder()
		WriteRefusal(rec, 429, e)
		if rec.Code != 429 || rec.Header().Get("Content-Type") != RefusalContentType {
			t.Fatalf("written as %d %v", rec.Code, rec.Header())
		}
		if e.RetryAfterMillis > 0 && rec.Header().Get("Retry-After") == "" {
			t.Fatalf("no Retry-After for %d ms", e.RetryAfterMillis)
		}
		again, ok := DecodeRefusal(rec.Body.Bytes())
		if !ok || !reflect.DeepEqual(again, e) {
			t.Fatalf("%+v written and read back as %+v (%v)", e, again, ok)
		}
	})
}
