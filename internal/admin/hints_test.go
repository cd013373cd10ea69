package admin

import (
	"context"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
)

// oneRollout answers every rollout route with the same rollout, which has
// no gate verdicts yet (Gates nil).
type oneRollout struct{}

func (oneRollout) Start(context.Context, string, rollout.StartRequest) (rollout.Rollout, error) {
	return rollout.Rollout{Rollout: api.Rollout{ID: "fraud-1"}}, nil
}

func (oneRollout) Act(context.Context, string, rollout.Action) (rollout.Rollout, error) {
	return rollout.Rollout{Rollout: api.Rollout{ID: "fraud-1"}}, nil
}

func (oneRollout) Current(context.Context, string) (rollout.Rollout, error) {
	return rollout.Rollout{Rollout: api.Rollout{ID: "fraud-1"}}, nil
}

func (oneRollout) History(context.Context, string) ([]rollout.Rollout, error) {
	return []rollout.Rollout{{Rollout: api.Rollout{ID: "fraud-1"}}}, nil
}

// TestGatesNeverNull: a rollout without gate verdicts answers "gates": [],
// on every route that answers a rollout.
func TestGatesNeverNull(t *testing.T) {
	const token = "admin-test-token-0123456789abcdef"
	h := New(Options{Backend: admintest.NewBackend(admintest.Fraud()), Rollouts: oneRollout{}, Token: token})
	for _, c := range []call{
		{"GET", "/api/v1/endpoints/fraud/rollout", ""},
		{"GET", "/api/v1/endpoints/fraud/rollouts", ""},
		{"POST", "/api/v1/endpoints/fraud/rollouts", `{"canary": "green"}`},
		{"POST", "/api/v1/endpoints/fraud/rollout/pause", ""},
	} {
		rec := do(t, h, token, c)
		if body := rec.Body.String(); rec.Code/100 != 2 || !strings.Contains(body, `"gates":[]`) || strings.Contains(body, `"gates":null`) {
			t.Errorf("%s %s = %d %s, want \"gates\":[]", c.method, c.path, rec.Code, body)
		}
	}
}
