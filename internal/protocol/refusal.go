package protocol

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// RefusalContentType marks a JSON Error body sent instead of a WebSocket
// upgrade, so a client can show the server's reason.
const RefusalContentType = "application/vnd.porthole.error+json"

// WriteRefusal answers a handshake request with status and e as JSON.
func WriteRefusal(w http.ResponseWriter, status int, e *Error) {
	w.Header().Set("Content-Type", RefusalContentType)
	if e.RetryAfterMillis > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt((e.RetryAfterMillis+999)/1000, 10))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}

// DecodeRefusal decodes a body written by WriteRefusal.
func DecodeRefusal(body []byte) (*Error, bool) {
	e := new(Error)
	if err := json.Unmarshal(body, e); err != nil || e.Code == "" {
		return nil, false
	}
	return e, true
}
