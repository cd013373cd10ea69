package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
)

// DefaultSeriesWindow is the window of GET .../series asked for without one.
const DefaultSeriesWindow = time.Hour

// Series reports an endpoint's numbers per deployment and time step, for
// the dashboard's charts. Errors map to statuses as Backend's do.
type Series interface {
	// Series covers the last window in steps of step.
	Series(ctx context.Context, endpoint string, window, step time.Duration) (control.SeriesReport, error)
}

// getSeries serves GET /api/v1/endpoints/{ep}/series?window=1h&step=10s.
func (s *server) getSeries(w http.ResponseWriter, r *http.Request) {
	window, step, err := parseSeriesQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.series.Series(r.Context(), r.PathValue("ep"), window, step)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
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
