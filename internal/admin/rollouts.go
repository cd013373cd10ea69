package admin

import (
	"encoding/json"
	"net/http"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
)

func (s *server) startRollout(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req api.StartRequest
	if err := api.DecodeJSON(body, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ro, err := s.rollouts.Start(r.Context(), r.PathValue("ep"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, rolloutAnswer(r, ro))
}

func (s *server) currentRollout(w http.ResponseWriter, r *http.Request) {
	ro, err := s.rollouts.Current(r.Context(), r.PathValue("ep"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rolloutAnswer(r, ro))
}

// visibleRollout is the rollout as the caller may see it: to the read-only
// token, its plan's confirm-promotion webhook redacted; no gate verdicts
// yet is "gates": [], not null.
func visibleRollout(r *http.Request, ro api.Rollout) api.Rollout {
	if readOnly(r) {
		ro.Plan = ro.Plan.Redacted()
	}
	if ro.Gates == nil {
		ro.Gates = []api.GateResult{}
	}
	return ro
}

// rolloutAnswer is a rollout's answer: as the caller may see it, with the
// state of its sequential tests.
func rolloutAnswer(r *http.Request, ro rollout.Rollout) api.RolloutAnswer {
	a := api.RolloutAnswer{Rollout: visibleRollout(r, ro.Rollout)}
	if ro.Analysis != nil {
		a.Analysis, _ = json.Marshal(ro.Analysis) // plain data: cannot fail
	}
	return a
}

func (s *server) rolloutHistory(w http.ResponseWriter, r *http.Request) {
	list, err := s.rollouts.History(r.Context(), r.PathValue("ep"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := api.RolloutList{Rollouts: make([]api.Rollout, len(list))}
	for i := range list {
		out.Rollouts[i] = visibleRollout(r, list[i].Rollout)
	}
	writeJSON(w, http.StatusOK, out)
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
	writeJSON(w, http.StatusOK, rolloutAnswer(r, ro))
}
