package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: a
// client's sessions, heartbeats, forwarders and local connections must all
// end when Run returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
