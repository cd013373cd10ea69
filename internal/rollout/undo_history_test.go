package rollout

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/api"
)

// TestUndoKeepsTheSuccess: an undone rollout's history still says that it
// had succeeded, when, and why.
func TestUndoKeepsTheSuccess(t *testing.T) {
	succeeded := time.Date(2026, 11, 26, 2, 17, 0, 0, time.UTC)
	r := Rollout{Rollout: api.Rollout{ID: "fraud-4", Endpoint: "fraud", Stable: "blue", Canary: "green", Phase: PhaseSucceeded,
		Reason: "promoted to 100% by hand", FinishedAt: &succeeded}}
	undoneAt := succeeded.Add(time.Minute)
	got, _, err := Next(r, Input{Now: undoneAt, Action: ActionUndo})
	if err != nil {
		t.Fatal(err)
	}
	if want := "undone by hand; it had succeeded: promoted to 100% by hand"; got.Phase != PhaseUndone || got.Reason != want {
		t.Errorf("undone = %s %q, want %s %q", got.Phase, got.Reason, PhaseUndone, want)
	}
	if got.SucceededAt == nil || !got.SucceededAt.Equal(succeeded) || got.FinishedAt == nil || !got.FinishedAt.Equal(undoneAt) {
		t.Errorf("succeeded_at %v, finished_at %v; want %v and %v", got.SucceededAt, got.FinishedAt, succeeded, undoneAt)
	}
	if _, _, err := Next(got, Input{Now: undoneAt, Action: ActionResume}); err == nil || err.Error() != "cannot resume a rollout that was undone: only a paused rollout can be resumed" {
		t.Errorf("resume after undo: %v", err)
	}
}
