package auth

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"github.com/porthole/porthole/internal/protocol"
)

// NewErrorID returns a short random id that ties an answer to its log line.
func NewErrorID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// internalError logs err, whose text may name the database's driver,
// files, hosts or users, under a fresh id, and returns what the client is
// told: a generic, retryable message carrying only that id.
func internalError(log *slog.Logger, what string, err error) *protocol.Error {
	id := NewErrorID()
	log.Error("internal error", "error_id", id, "during", what, "err", err)
	return protocol.Err(protocol.CodeInternal, false, "%s: internal server error (error id %s); try again later, or give the operator this id", what, id)
}
