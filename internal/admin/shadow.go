package admin

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/shadow"
)

// Shadows reports shadow comparisons: a replica's raw part of an
// endpoint's shadow report, which shadow.Merge combines with the other
// replicas' and Part.Report reports.
type Shadows interface {
	// ShadowPart is this gateway's part of endpoint's shadow report over
	// the last window; an unknown endpoint is store.ErrNotFound.
	ShadowPart(ctx context.Context, endpoint string, window time.Duration) (shadow.Part, error)
}

// shadowReport serves GET /api/v1/endpoints/{ep}/shadow?window=5m
// (&replica=): the fleet's copies (fleet_api.go), or one replica's.
func (s *server) shadowReport(w http.ResponseWriter, r *http.Request) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep := r.PathValue("ep")
	parts, cov, err := gather(s, w, r, fleetRead[shadow.Part]{
		kind:   "shadow",
		query:  url.Values{"window": {api.FormatWindow(window)}},
		local:  func(ctx context.Context) (shadow.Part, error) { return s.shadows.ShadowPart(ctx, ep, window) },
		decode: DecodeShadowPart,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ShadowAnswer{ShadowReport: shadow.Merge(parts...).Report(ep, window), Replicas: cov})
}
