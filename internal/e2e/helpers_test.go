package e2e_test

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
)

// startDaemon runs the real daemon in-process on the :0 ports of yaml,
// looking at rollouts every 100ms, and returns a client for it.
func startDaemon(t *testing.T, yaml string) *testenv.Client {
	t.Helper()
	return testenv.Connect(t, testenv.StartDaemon(t, yaml, testenv.RolloutInterval(100*time.Millisecond)))
}
