package link

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderProcessEnv) != "" {
		runHolderProcess()
		return
	}
	goleak.VerifyTestMain(m)
}
