package admin

import (
	"context"
	"net/http"

	"github.com/modelgate/modelgate/internal/api"
)

// Replicas lists the gateways of the fleet (one without cluster mode).
type Replicas interface {
	Replicas(ctx context.Context) ([]api.Replica, error)
}

func (s *server) listReplicas(w http.ResponseWriter, r *http.Request) {
	rs, err := s.replicas.Replicas(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rs == nil {
		rs = []api.Replica{}
	}
	writeJSON(w, http.StatusOK, api.ReplicaList{Replicas: rs})
}
