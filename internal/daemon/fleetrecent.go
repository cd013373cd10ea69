package daemon

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// recent is an endpoint's deployments' traffic over the last window on
// every replica that answers within admin.FleetReadTimeout (cluster mode),
// for a new rollout's estimate: the leader's own share alone would make
// every stage look slower than it will be.
func (d *Daemon) recent(ctx context.Context, endpoint string, window time.Duration) map[string]telemetry.Summary {
	own, err := d.control.MetricsPart(ctx, endpoint, window)
	if err != nil {
		return nil
	}
	parts := []control.MetricsPart{own}
	peers, err := d.peers(ctx)
	if err != nil {
		d.log.Warn("rollout estimate: the fleet's list cannot be read; estimating from this replica's traffic alone", "err", err)
		return control.MergeMetrics(parts)
	}
	path := "/api/v1/fleet/endpoints/" + url.PathEscape(endpoint) + "/metrics?window=" + url.QueryEscape(window.String())
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range peers {
		if p.ID == d.id {
			continue
		}
		wg.Add(1)
		go func(p fleet.Peer) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, admin.FleetReadTimeout)
			defer cancel()
			var a admin.PartAnswer[control.MetricsPart]
			err := d.peerClient.Call(cctx, p, http.MethodGet, path, "", nil, &a)
			if err == nil && a.Replica == p.ID {
				err = a.Part.Check()
			}
			if err != nil || a.Replica != p.ID {
				d.log.Warn("rollout estimate: a replica's traffic is left out", "replica", p.ID, "err", err)
				return
			}
			mu.Lock()
			parts = append(parts, a.Part)
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	return control.MergeMetrics(parts)
}
