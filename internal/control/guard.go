package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/modelgate/modelgate/internal/store"
)

// RolloutKeyPrefix is where the rollout controller keeps its rollouts
// (RolloutKeyPrefix + endpoint + "/" + a 10-digit number, so that the
// last key of an endpoint is its newest rollout). The control service
// reads it to refuse hand changes of an endpoint a rollout is moving.
const RolloutKeyPrefix = "rollouts/"

// RolloutActiveError refuses a traffic or mirror change of an endpoint
// while a rollout is moving it (errors.Is store.ErrConflict: the API
// answers 409). A change made anyway (Force) is recorded as forced.
type RolloutActiveError struct {
	Endpoint string
	// Field is "traffic" or "mirror".
	Field string
	// ID and Phase are the active rollout's.
	ID, Phase string
}

func (e *RolloutActiveError) Error() string {
	then := ""
	if e.Field == "traffic" {
		then = " (the rollout then pauses until resumed)"
	}
	return fmt.Sprintf("rollout %s is %s on %s and sets its %s: steer it with modelgate rollout pause|promote|abort %s, or set the %s anyway with --force (API: ?force=true)%s",
		e.ID, e.Phase, e.Endpoint, e.Field, e.Endpoint, e.Field, then)
}

// Is makes the error a store.ErrConflict.
func (e *RolloutActiveError) Is(target error) bool { return target == store.ErrConflict }

type forceKey struct{}

// Force returns ctx making SetTraffic and SetMirror change an endpoint
// even while a rollout is moving it; the change's event says so.
func Force(ctx context.Context) context.Context {
	return context.WithValue(ctx, forceKey{}, true)
}

// Forced reports whether Force marked ctx.
func Forced(ctx context.Context) bool {
	f, _ := ctx.Value(forceKey{}).(bool)
	return f
}

// activeRollout is the endpoint's newest stored rollout when it has not
// ended; nil otherwise.
func (s *Service) activeRollout(ctx context.Context, endpoint string) (*struct{ ID, Phase string }, error) {
	kvs, err := s.store.List(ctx, RolloutKeyPrefix+endpoint+"/")
	if err != nil {
		return nil, fmt.Errorf("read the rollouts of %s: %w", endpoint, err)
	}
	if len(kvs) == 0 {
		return nil, nil
	}
	var r struct {
		ID    string `json:"id"`
		Phase string `json:"phase"`
	}
	if err := json.Unmarshal(kvs[len(kvs)-1].Value, &r); err != nil {
		return nil, fmt.Errorf("read the last rollout of %s (%s): %w", endpoint, kvs[len(kvs)-1].Key, err)
	}
	switch r.Phase {
	case "succeeded", "rolled_back", "aborted", "undone":
		return nil, nil
	}
	return &struct{ ID, Phase string }{r.ID, r.Phase}, nil
}
