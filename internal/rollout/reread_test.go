package rollout

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
)

// lateStore commits, then reports the commit failed, once when armed: a
// call to etcd that timed out though etcd had applied it.
type lateStore struct {
	store.Store
	armed atomic.Bool
}

func (s *lateStore) Commit(ctx context.Context, txn store.Txn) (uint64, []store.Event, error) {
	rev, evs, err := s.Store.Commit(ctx, txn)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		return 0, nil, fmt.Errorf("%w: etcd did not answer within 5s (it applied the commit all the same)", store.ErrUnavailable)
	}
	return rev, evs, err
}

// A transition whose commit was applied but reported failed is not made
// again: the controller continues from the stored record, and the log
// holds each stage once.
func TestATransitionReportedFailedButAppliedIsNotRepeated(t *testing.T) {
	ctx := t.Context()
	var st *lateStore
	c := newControllerOver(t, func(b *bolt.Store) store.Store { st = &lateStore{Store: b}; return st },
		func(o *Options) { o.SkipEstimate = true })
	plan := spec.Plan{Stages: []spec.Stage{{Weight: 1000}, {Weight: 5000}, {Weight: 8000}, {Weight: spec.Full}}, Bake: spec.Duration(time.Hour)}
	if _, err := c.Start(ctx, "fraud", StartRequest{Canary: "green", Plan: plan}); err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	if _, err := c.Act(ctx, "fraud", ActionPromote); err == nil {
		t.Fatal("the promotion whose commit was reported failed answered no error")
	}
	if r, _ := c.Current(ctx, "fraud"); r.Stage != 1 {
		t.Fatalf("after a promotion applied but reported failed the rollout is at stage %d, want 1 (the stored record)", r.Stage)
	}
	var promoted bool
	for range 3 { // a conflict first: the control service's view of the endpoint is behind the store
		if _, err := c.Act(ctx, "fraud", ActionPromote); err == nil {
			promoted = true
			break
		}
	}
	if !promoted {
		t.Fatal("the next promotion never went through")
	}
	if r, _ := c.Current(ctx, "fraud"); r.Stage != 2 {
		t.Errorf("after the next promotion the rollout is at stage %d, want 2", r.Stage)
	}
	evs, err := st.Events(ctx, store.EventFilter{Endpoint: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]int{}
	for _, e := range evs {
		if e.Type == EventStage {
			stages[e.Message]++
		}
	}
	for msg, n := range stages {
		if n != 1 {
			t.Errorf("%d× in the log: %s", n, msg)
		}
	}
	if len(stages) != 3 {
		t.Errorf("stage events %v, want the first three stages once each", stages)
	}
}

// A start whose commit was applied but reported failed runs all the same:
// a second start is refused as busy, not made as a second rollout.
func TestAStartReportedFailedButAppliedRuns(t *testing.T) {
	ctx := t.Context()
	var st *lateStore
	c := newControllerOver(t, func(b *bolt.Store) store.Store { st = &lateStore{Store: b}; return st },
		func(o *Options) { o.SkipEstimate = true })
	plan := spec.Plan{Stages: []spec.Stage{{Weight: 1000}, {Weight: spec.Full}}, Bake: spec.Duration(time.Hour)}
	st.armed.Store(true)
	if _, err := c.Start(ctx, "fraud", StartRequest{Canary: "green", Plan: plan}); err == nil {
		t.Fatal("the start whose commit was reported failed answered no error")
	}
	if _, err := c.Start(ctx, "fraud", StartRequest{Canary: "green", Plan: plan}); err == nil || !strings.Contains(err.Error(), "already has rollout fraud-1") {
		t.Fatalf("a second start = %v, want refused: fraud-1 runs", err)
	}
	if list, _ := c.History(ctx, "fraud"); len(list) != 1 {
		t.Errorf("%d rollouts stored, want 1", len(list))
	}
}
