package admin

import (
	"net/http"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
)

// RolloutList is the answer of GET .../rollouts.
type RolloutList struct {
	Rollouts []rollout.Rollout `json:"rollouts"`
}

func (s *server) startRollout(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req rollout.StartRequest
	if err := config.Decode(body, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ro, err := s.rollouts.Start(r.Context(), r.PathValue("ep"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, visibleRollout(r, ro))
}

func (s *server) currentRollout(w http.ResponseWriter, r *http.Request) {
	ro, err := s.rollouts.Current(r.Context(), r.PathValue("ep"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, visibleRollout(r, ro))
}

// visibleRollout is the rollout as the caller may see it: to the read-only
// token, its plan's confirm-promotion webhook redacted; no gate verdicts
// yet is "gates": [], not null.
func visibleRollout(r *http.Request, ro rollout.Rollout) rollout.Rollout {
	if readOnly(r) {
		ro.Plan = ro.Plan.Redacted()
	}
	if ro.Gates == nil {
		ro.Gates = []analysis.GateResult{}
	}
	return ro
}

func (s *server) rolloutHistory(w http.ResponseWriter, r *http.Request) {
	list, err := s.rollouts.History(r.Context(), r.PathValue("ep"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []rollout.Rollout{}
	}
	for i := range list {
		list[i] = visibleRollout(r, list[i])
	}
	writeJSON(w, http.StatusOK, RolloutList{Rollouts: list})
}

func (s *server) rolloutAction(w http.ResponseWriter, r *http.Request) {
	a := rollout.Action(r.PathValue("action"))
	known := false
	for _, k := range rollout.Actions {
		known = known || k == a
	}
	if !known {
		s.writeError(w, r, spec.Problemf("action", "unknown action %q: use pause, resume, promote, promote-full, abort, retry or undo", a))
		return
	}
	ro, err := s.rollouts.Act(r.Context(), r.PathValue("ep"), a)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, visibleRollout(r, ro))
}
