package daemon

import (
	"context"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/shadow"
)

// fleetReads configures the admin API's fleet-wide metrics, series and
// shadow answers: in cluster mode they ask every replica etcd lists for
// its part, with the caller's token, over state.etcd.peer_tls for https
// admin URLs; otherwise this gateway answers alone (replicas 1 of 1).
func (d *Daemon) fleetReads() admin.FleetReads {
	fr := admin.FleetReads{Self: d.id}
	if d.peerClient != nil {
		fr.Peers = d.peerClient
	}
	return fr
}

// shadowReports answers the shadow report routes; an unknown endpoint is 404.
type shadowReports struct {
	control *control.Service
	shadows *shadow.Manager
}

func (s shadowReports) ShadowPart(ctx context.Context, endpoint string, window time.Duration) (shadow.Part, error) {
	if _, err := s.control.Endpoint(ctx, endpoint); err != nil {
		return shadow.Part{}, err
	}
	return s.shadows.Part(endpoint, window)
}
