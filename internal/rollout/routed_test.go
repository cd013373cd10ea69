package rollout

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
)

// TestStagesJudgedFromTheirRouting: the sample-ratio test of a stage
// judges from when its split was committed (analysis.RoutedAt), at the
// start and at every later stage, not from the decision before the commit.
func TestStagesJudgedFromTheirRouting(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	c := newControllerOver(t, func(b *bolt.Store) store.Store { return b }, func(o *Options) { o.SkipEstimate, o.Now = true, clock.Now })
	plan := spec.Plan{Stages: []spec.Stage{{Weight: 1000}, {Weight: 5000}, {Weight: spec.Full}}, Bake: spec.Duration(time.Hour)}
	r, err := c.Start(t.Context(), "fraud", StartRequest{Canary: "green", Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	routed := func() time.Time {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.runs["fraud"].analyzer.State().Stage.Routed
	}
	if got := routed(); got.IsZero() || got.Before(r.StageStarted) {
		t.Errorf("the first stage routed at %v, want after its start %v", got, r.StageStarted)
	}
	clock.mu.Lock()
	clock.now = clock.now.Add(10 * time.Second)
	promoted := clock.now
	clock.mu.Unlock()
	r, err = c.Act(t.Context(), "fraud", ActionPromote)
	if err != nil {
		t.Fatal(err)
	}
	if got := routed(); r.Stage != 1 || !got.Equal(promoted) {
		t.Errorf("stage %d routed at %v, want %v: from the promotion's commit on", r.Stage, got, promoted)
	}
}
