package admin

import (
	"context"
	"net/http"
	"time"
)

// Replica is one gateway of the fleet, as GET /api/v1/replicas lists it.
type Replica struct {
	// ID names the gateway: its hostname, process id and a random part.
	ID string `json:"id"`
	// AdminURL is where its admin API is reached (admin.advertise_url).
	AdminURL string `json:"admin_url"`
	// DataPlane is its data plane's listening address.
	DataPlane string `json:"data_plane"`
	// Version is the modelgate it runs.
	Version string `json:"version"`
	// StartedAt is when it started; LastSeen when it last wrote its
	// record (every few seconds while it runs).
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	// Leader is set on the gateway that leads the fleet's rollouts.
	Leader bool `json:"leader"`
	// Self is set on the gateway that answered.
	Self bool `json:"self"`
}

// ReplicaList is the answer of GET /api/v1/replicas.
type ReplicaList struct {
	Replicas []Replica `json:"replicas"`
}

// Replicas lists the gateways of the fleet (one without cluster mode).
type Replicas interface {
	Replicas(ctx context.Context) ([]Replica, error)
}

func (s *server) listReplicas(w http.ResponseWriter, r *http.Request) {
	rs, err := s.replicas.Replicas(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rs == nil {
		rs = []Replica{}
	}
	writeJSON(w, http.StatusOK, ReplicaList{Replicas: rs})
}
