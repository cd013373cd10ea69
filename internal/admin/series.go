package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
)

// DefaultSeriesWindow is the window of GET .../series asked for without one.
const DefaultSeriesWindow = time.Hour

// Series reports an endpoint's numbers per deployment and time step, for
// the dashboard's charts: a replica's raw part on a grid of steps, and the
// report built from the parts of several replicas (control.Service).
// Errors map to statuses as Backend's do.
type Series interface {
	// SeriesGrid places the steps of the last window in steps of step.
	SeriesGrid(window, step time.Duration) (control.SeriesGrid, error)
	// SeriesPart reads this gateway's part on grid g.
	SeriesPart(ctx context.Context, endpoint string, g control.SeriesGrid) (control.SeriesPart, error)
	// SeriesReport builds the series from the parts of every replica
	// reporting.
	SeriesReport(ctx context.Context, endpoint string, g control.SeriesGrid, parts []control.SeriesPart) (control.SeriesReport, error)
}

// getSeries serves GET /api/v1/endpoints/{ep}/series?window=1h&step=10s
// (&replica=): the fleet's numbers (fleet_api.go), or one replica's. Every
// replica reads the grid this one chose.
func (s *server) getSeries(w http.ResponseWriter, r *http.Request) {
	window, step, err := parseSeriesQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	g, err := s.series.SeriesGrid(window, step)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep := r.PathValue("ep")
	parts, cov, err := gather(s, w, r, fleetRead[control.SeriesPart]{
		kind: "series",
		query: url.Values{"window": {api.FormatWindow(window)}, "step": {api.FormatWindow(step)},
			"end": {strconv.FormatInt(g.End.Unix(), 10)}},
		local: func(ctx context.Context) (control.SeriesPart, error) { return s.series.SeriesPart(ctx, ep, g) },
		decode: func(b []byte, id string) (control.SeriesPart, error) {
			return DecodeSeriesPart(b, id, g)
		},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.series.SeriesReport(r.Context(), ep, g, parts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.SeriesAnswer{SeriesReport: rep, Replicas: cov})
}

// parseSeriesQuery reads ?window= (default 1h) and ?step= (default: at
// most 360 points), reporting every problem at once.
func parseSeriesQuery(r *http.Request) (window, step time.Duration, err error) {
	q := r.URL.Query()
	var errs []error
	window = DefaultSeriesWindow
	if v := q.Get("window"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil {
			errs = append(errs, spec.Problemf("window", "%q is not a duration: use e.g. 10m or 1h", v))
		}
		window = d
	}
	if v := q.Get("step"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil {
			errs = append(errs, spec.Problemf("step", "%q is not a duration: use e.g. 1s or 10s", v))
		}
		step = d
	} else if len(errs) == 0 {
		step = control.DefaultSeriesStep(window)
	}
	if len(errs) > 0 {
		return 0, 0, errors.Join(errs...)
	}
	return window, step, control.ValidateSeries(window, step)
}
