package fleet

import (
	"fmt"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
)

// EvidenceRequest is the leader's pull: every rollout it follows on the
// replica, POST /api/v1/fleet/evidence.
type EvidenceRequest struct {
	Follows []Follow `json:"follows"`
}

// Follow is one rollout the leader follows on a replica.
type Follow struct {
	// Key names the follow: chosen by the leader, new for every run it
	// loads (a new leader never reads another's parts).
	Key      string `json:"key"`
	Endpoint string `json:"endpoint"`
	Stable   string `json:"stable"`
	Canary   string `json:"canary"`
	// From is the instant the replica starts reading from when the follow
	// is new: its second whole, or from the instant itself when FromNow.
	From    time.Time `json:"from"`
	FromNow bool      `json:"from_now,omitempty"`
	// Taken counts the parts the leader has taken of this follow: the
	// replica forgets them and answers with the ones after.
	Taken uint64 `json:"taken"`
	// ShadowSince, when set, asks for the canary's shadow counts since
	// then (the stage's start).
	ShadowSince *time.Time `json:"shadow_since,omitempty"`
}

// EvidenceAnswer is a replica's answer to a pull.
type EvidenceAnswer struct {
	Replica string         `json:"replica"`
	Follows []FollowAnswer `json:"follows"`
}

// FollowAnswer is what a replica's two deployments served for one follow.
type FollowAnswer struct {
	Key string `json:"key"`
	// First is the index of Parts[0] among every part of the follow.
	First uint64               `json:"first"`
	Parts []analysis.SlicePair `json:"parts"`
	// Through: every request that finished before it is in the parts
	// taken or answered.
	Through time.Time `json:"through"`
	// Shadow is the canary's shadow counts since the follow's
	// ShadowSince (nil when not asked).
	Shadow *analysis.ShadowCounts `json:"shadow,omitempty"`
	// Error is set when the follow could not be served (too many
	// follows, parts not taken for too long): the leader starts it again.
	Error string `json:"error,omitempty"`
}

// Limits of what a replica keeps for the leader's follows.
const (
	// MaxFollows bounds the follows a replica keeps (one per running
	// rollout of the fleet).
	MaxFollows = 4096
	// MaxParts bounds the parts a follow keeps that the leader has not
	// taken (two a pull at most: about two minutes of pulls at the
	// default interval): past it the follow is dropped and answered with
	// an Error.
	MaxParts = 1024
	// FollowIdle is how long a follow the leader stopped asking for is kept.
	FollowIdle = 30 * time.Second
)

// Validate checks a pull before anything is read for it.
func (r EvidenceRequest) Validate() error {
	if len(r.Follows) > MaxFollows {
		return fmt.Errorf("%d follows in one pull, at most %d", len(r.Follows), MaxFollows)
	}
	seen := make(map[string]bool, len(r.Follows))
	for i, f := range r.Follows {
		switch {
		case f.Key == "" || len(f.Key) > 128:
			return fmt.Errorf("follows[%d].key: 1 to 128 characters, got %d", i, len(f.Key))
		case seen[f.Key]:
			return fmt.Errorf("follows[%d].key %q: named twice", i, f.Key)
		case f.Endpoint == "" || f.Stable == "" || f.Canary == "":
			return fmt.Errorf("follows[%d]: endpoint, stable and canary are required", i)
		case f.From.IsZero():
			return fmt.Errorf("follows[%d].from is required", i)
		}
		seen[f.Key] = true
	}
	return nil
}
