package protocol

import "fmt"

// Code classifies an Error so that a client can tell "name taken" from
// "server restarting" without parsing the message.
type Code string

const (
	CodeUnsupportedVersion Code = "unsupported_version" // final
	CodeUnauthorized       Code = "unauthorized"        // final: bad, expired or revoked credential
	CodeForbidden          Code = "forbidden"           // final: credential fine, action not allowed
	CodeInvalidName        Code = "invalid_name"        // final: subdomain or hostname malformed
	CodeNameReserved       Code = "name_reserved"       // final: reserved by the server or another user
	CodeNameTaken          Code = "name_taken"          // final: held by another live tunnel
	CodePortUnavailable    Code = "port_unavailable"    // final: outside the range or taken
	CodeLimitExceeded      Code = "limit_exceeded"      // final: e.g. too many tunnels
	CodeRateLimited        Code = "rate_limited"        // retryable: slow down
	CodeBadRequest         Code = "bad_request"         // final: malformed message
	CodeShuttingDown       Code = "shutting_down"       // retryable
	CodeInternal           Code = "internal"            // retryable
)

// Err builds an Error message.
func Err(code Code, final bool, format string, args ...any) *Error {
	return &Error{Code: code, Final: final, Message: fmt.Sprintf(format, args...)}
}

// Error makes *Error usable as a Go error on the receiving side.
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message
}
