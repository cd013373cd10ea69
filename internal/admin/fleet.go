package admin

import (
	"encoding/json"
	"net/http"

	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/spec"
)

// Evidence answers the rollout leader's pulls (cluster mode):
// fleet.Reporter.
type Evidence interface {
	Answer(req fleet.EvidenceRequest) (fleet.EvidenceAnswer, error)
}

// fleetEvidence answers POST /api/v1/fleet/evidence: what this replica's
// deployments served for the rollouts the leader follows. It reads
// telemetry only, but keeps state for the leader (the parts it has not
// taken), so it takes the admin token.
func (s *server) fleetEvidence(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req fleet.EvidenceRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.writeError(w, r, spec.Problemf("", "read the evidence request: %v", err))
		return
	}
	ans, err := s.evidence.Answer(req)
	if err != nil {
		s.writeError(w, r, spec.Problemf("", "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, ans)
}
