package control

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
)

// Fleet-wide reports. In cluster mode every replica measures only the
// requests it served; a fleet-wide metrics report or series is built by
// one replica from every replica's raw part. A part holds counts and
// sketches, never quantiles or rates: counts add and sketches merge, so
// the fleet's quantiles are those of every request the fleet served, not
// an average of the replicas' (which would be wrong for any quantile).
// The part of this gateway and the report built from any number of parts
// are two calls, MetricsPart and MetricsReport (SeriesPart and
// SeriesReport), so that one gateway alone and a fleet go through the same
// code.

// MetricsPart is one gateway's raw part of an endpoint's metrics report:
// each deployment's summary of the window.
type MetricsPart struct {
	Deployments map[string]telemetry.Summary `json:"deployments"`
}

// MetricsPart reads this gateway's summaries of an endpoint's deployments
// over the window ending now.
func (s *Service) MetricsPart(ctx context.Context, name string, window time.Duration) (MetricsPart, error) {
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return MetricsPart{}, s.notFound(name)
	}
	now := s.now()
	p := MetricsPart{Deployments: make(map[string]telemetry.Summary, len(r.endpoint.Deployments))}
	for _, d := range r.endpoint.Deployments {
		p.Deployments[d.Name] = s.telemetry.Recorder(name, d.Name).Window(now, window)
	}
	return p, nil
}

// MetricsReport builds an endpoint's metrics report from the parts of
// every gateway reporting (each deployment's summaries merged), with this
// gateway's view of the endpoint: its deployments in config order and its
// baseline. A deployment only some part knows is reported too (BuildReport).
func (s *Service) MetricsReport(ctx context.Context, name string, window time.Duration, parts []MetricsPart) (telemetry.Report, error) {
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return telemetry.Report{}, s.notFound(name)
	}
	e := r.endpoint
	order := make([]string, len(e.Deployments))
	for i, d := range e.Deployments {
		order[i] = d.Name
	}
	return telemetry.BuildReport(name, window, Baseline(e), order, MergeMetrics(parts)), nil
}

// MergeMetrics adds up the parts' summaries per deployment.
func MergeMetrics(parts []MetricsPart) map[string]telemetry.Summary {
	sums := map[string]telemetry.Summary{}
	for _, p := range parts {
		for name, sum := range p.Deployments {
			m := sums[name]
			m.Merge(sum)
			sums[name] = m
		}
	}
	return sums
}

// Check refuses a part read from another replica whose counts cannot be
// (a report built from it would show negative or impossible numbers).
func (p MetricsPart) Check() error {
	for name, s := range p.Deployments {
		if err := checkSummary(s); err != nil {
			return fmt.Errorf("deployment %q: %w", name, err)
		}
	}
	return nil
}

func checkSummary(s telemetry.Summary) error {
	var status uint64
	for _, n := range s.Status {
		if n > s.Requests-status {
			return fmt.Errorf("the status classes count more than the %d requests", s.Requests)
		}
		status += n
	}
	switch {
	case s.OverrideRequests > s.Requests:
		return fmt.Errorf("%d override requests of %d", s.OverrideRequests, s.Requests)
	case s.ClientErrors > s.Requests || s.Errors > s.Requests-s.ClientErrors:
		return fmt.Errorf("%d errors and %d client errors of %d requests", s.Errors, s.ClientErrors, s.Requests)
	case s.SplitErrors > s.Errors:
		return fmt.Errorf("%d split errors of %d errors", s.SplitErrors, s.Errors)
	case s.InFlight < 0:
		return fmt.Errorf("%d requests in flight", s.InFlight)
	case s.Window < 0:
		return fmt.Errorf("window %s", s.Window)
	}
	return nil
}

// SeriesGrid places a series' steps: Window/Step steps of Step, the last
// ending at End, a whole second. The replica answering a fleet-wide series
// chooses it and every replica reads the same seconds.
type SeriesGrid struct {
	End          time.Time
	Window, Step time.Duration
}

// SeriesGrid is the grid of a series over the last window in steps of
// step: its last step ends with the last complete second (the current
// one, still filling, would show as a dip at the end of every chart).
func (s *Service) SeriesGrid(window, step time.Duration) (SeriesGrid, error) {
	if err := ValidateSeries(window, step); err != nil {
		return SeriesGrid{}, err
	}
	return SeriesGrid{End: time.Unix(floorSec(s.now()), 0), Window: window, Step: step}, nil
}

// Validate checks the grid's window and step (ValidateSeries) and that it
// ends on a whole second.
func (g SeriesGrid) Validate() error {
	if err := ValidateSeries(g.Window, g.Step); err != nil {
		return err
	}
	if g.End.Nanosecond() != 0 {
		return fmt.Errorf("series end %s is not a whole second", g.End)
	}
	return nil
}

// Steps is the number of steps of the grid.
func (g SeriesGrid) Steps() int { return int(g.Window / g.Step) }

func (g SeriesGrid) grid() seriesGrid {
	st := int64(g.Step / time.Second)
	n := g.Steps()
	last := g.End.Unix() - 1
	return seriesGrid{n: n, step: st, first: last - int64(n)*st + 1, last: last}
}

// SeriesPart is one gateway's raw part of a series: per deployment, one
// point per step of the grid.
type SeriesPart struct {
	Deployments map[string][]SeriesPoint `json:"deployments"`
}

// SeriesPoint is one deployment's counts and latency sketch in one step.
type SeriesPoint struct {
	// Requests counts live requests, override-routed ones included; Split
	// those routed by the split; Errors the 5xx among Requests.
	Requests uint64 `json:"requests,omitempty"`
	Split    uint64 `json:"split,omitempty"`
	Errors   uint64 `json:"errors,omitempty"`
	// Latency holds the split-routed requests' times to the last byte.
	Latency telemetry.Sketch `json:"latency,omitzero"`
}

// add merges o into p.
func (p *SeriesPoint) add(o SeriesPoint) {
	p.Requests += o.Requests
	p.Split += o.Split
	p.Errors += o.Errors
	p.Latency.Merge(o.Latency)
}

// SeriesPart reads this gateway's points of an endpoint's deployments on
// the grid g.
func (s *Service) SeriesPart(ctx context.Context, name string, g SeriesGrid) (SeriesPart, error) {
	if err := g.Validate(); err != nil {
		return SeriesPart{}, err
	}
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return SeriesPart{}, s.notFound(name)
	}
	sg := g.grid()
	p := SeriesPart{Deployments: make(map[string][]SeriesPoint, len(r.endpoint.Deployments))}
	for _, d := range r.endpoint.Deployments {
		p.Deployments[d.Name] = sg.points(s.telemetry.Recorder(name, d.Name))
	}
	return p, nil
}

// Check refuses a part read from another replica that does not fit the
// grid g (one point per step) or whose counts cannot be.
func (p SeriesPart) Check(g SeriesGrid) error {
	n := g.Steps()
	names := make([]string, 0, len(p.Deployments))
	for name := range p.Deployments {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pts := p.Deployments[name]
		if len(pts) != n {
			return fmt.Errorf("deployment %q: %d points, want one per step (%d)", name, len(pts), n)
		}
		for k, pt := range pts {
			if pt.Split > pt.Requests || pt.Errors > pt.Requests {
				return fmt.Errorf("deployment %q, step %d: %d split requests and %d errors of %d requests", name, k, pt.Split, pt.Errors, pt.Requests)
			}
		}
	}
	return nil
}
