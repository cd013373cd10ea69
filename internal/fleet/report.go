package fleet

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// ShadowCounter reports a deployment's shadow comparison counts since a
// time (shadow.Store's counts).
type ShadowCounter interface {
	Counts(endpoint, deployment string, since, now time.Time) analysis.ShadowCounts
}

// Reporter answers the leader's pulls on every replica: it keeps a pair of
// telemetry tails per follow and the parts the leader has not taken yet.
// Safe for concurrent use.
type Reporter struct {
	id     string
	reg    *telemetry.Registry
	shadow ShadowCounter // nil: no shadow counts
	now    func() time.Time

	mu      sync.Mutex
	follows map[string]*follow
}

// follow is one rollout followed for the leader.
type follow struct {
	stable, canary *telemetry.Tail
	first          uint64 // index of parts[0] among the follow's parts
	parts          []analysis.SlicePair
	asked          time.Time
}

// NewReporter returns the Reporter of replica id. now nil: time.Now.
func NewReporter(id string, reg *telemetry.Registry, shadow ShadowCounter, now func() time.Time) *Reporter {
	if now == nil {
		now = time.Now
	}
	return &Reporter{id: id, reg: reg, shadow: shadow, now: now, follows: map[string]*follow{}}
}

// Answer reads what each follow's deployments served since the parts the
// leader has taken, and forgets the follows it stopped asking for.
func (r *Reporter) Answer(req EvidenceRequest) (EvidenceAnswer, error) {
	if err := req.Validate(); err != nil {
		return EvidenceAnswer{}, err
	}
	now := r.now()
	ans := EvidenceAnswer{Replica: r.id, Follows: make([]FollowAnswer, 0, len(req.Follows))}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range req.Follows {
		ans.Follows = append(ans.Follows, r.answer(f, now))
	}
	for k, fo := range r.follows {
		if now.Sub(fo.asked) > FollowIdle {
			delete(r.follows, k)
		}
	}
	return ans, nil
}

// answer serves one follow. Caller holds mu.
func (r *Reporter) answer(f Follow, now time.Time) FollowAnswer {
	a := FollowAnswer{Key: f.Key}
	if f.ShadowSince != nil && r.shadow != nil {
		c := r.shadow.Counts(f.Endpoint, f.Canary, *f.ShadowSince, now)
		a.Shadow = &c
	}
	fo, ok := r.follows[f.Key]
	if !ok {
		if f.Taken != 0 {
			// The leader took parts of a follow this replica no longer
			// has (it restarted, or dropped the follow): what it served
			// meanwhile is gone, and saying so beats answering from now.
			a.Error = fmt.Sprintf("follow %s is not kept here (restarted, or not asked for %s): its parts since are lost", f.Key, FollowIdle)
			return a
		}
		if len(r.follows) >= MaxFollows {
			a.Error = fmt.Sprintf("this replica keeps %d follows already, at most %d", len(r.follows), MaxFollows)
			return a
		}
		stable, okS := r.reg.Lookup(f.Endpoint, f.Stable)
		canary, okC := r.reg.Lookup(f.Endpoint, f.Canary)
		if !okS || !okC {
			// Not routed here yet: nothing served. The follow starts
			// when both are, from f.From, so nothing is missed.
			a.Through = now.Add(-telemetry.TailGrace)
			return a
		}
		fo = &follow{}
		if f.FromNow {
			fo.stable, fo.canary = stable.TailFrom(f.From), canary.TailFrom(f.From)
		} else {
			fo.stable, fo.canary = stable.Tail(f.From), canary.Tail(f.From)
		}
		r.follows[f.Key] = fo
	}
	fo.asked = now
	if f.Taken > fo.first {
		drop := min(f.Taken-fo.first, uint64(len(fo.parts)))
		fo.parts = append(fo.parts[:0], fo.parts[drop:]...)
		fo.first += drop
	}
	fo.parts = append(fo.parts, analysis.ReadPairs(fo.stable, fo.canary, now)...)
	if len(fo.parts) > MaxParts {
		delete(r.follows, f.Key)
		a.Error = fmt.Sprintf("follow %s: %d parts not taken, at most %d: dropped", f.Key, len(fo.parts), MaxParts)
		return a
	}
	a.First, a.Parts, a.Through = fo.first, slices.Clone(fo.parts), now.Add(-telemetry.TailGrace)
	return a
}
