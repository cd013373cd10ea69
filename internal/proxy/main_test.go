package proxy

import (
	"testing"

	"github.com/modelgate/modelgate/internal/leaktest"
)

// TestMain fails the package when a goroutine outlives its tests.
func TestMain(m *testing.M) {
	leaktest.VerifyTestMain(m)
}
