package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/timeslot"
)

// Limits of a series (GET /api/v1/endpoints/{ep}/series).
const (
	MinSeriesWindow = 10 * time.Second
	MaxSeriesWindow = time.Hour
	MinSeriesStep   = time.Second
	MaxSeriesPoints = 720
)

// SeriesReport is api.SeriesReport, the wire form.
type SeriesReport = api.SeriesReport

// DeploymentSeries is api.DeploymentSeries, the wire form.
type DeploymentSeries = api.DeploymentSeries

// ValidateSeries checks a series' window and step, returning every problem
// (as *spec.Problem errors joined).
func ValidateSeries(window, step time.Duration) error {
	var errs []error
	windowOK := window >= MinSeriesWindow && window <= MaxSeriesWindow && window%time.Second == 0
	if !windowOK {
		errs = append(errs, spec.Problemf("window", "%s is not a window from 10s to 1h in whole seconds", api.FormatWindow(window)))
	}
	switch {
	case step < MinSeriesStep || step%time.Second != 0:
		errs = append(errs, spec.Problemf("step", "%s is not a step of whole seconds, at least 1s", api.FormatWindow(step)))
	case windowOK && step > window:
		errs = append(errs, spec.Problemf("step", "step %s is longer than the window %s", api.FormatWindow(step), api.FormatWindow(window)))
	case windowOK && window/step > MaxSeriesPoints:
		errs = append(errs, spec.Problemf("step", "window %s in steps of %s is %d points, at most %d: use a step of at least %s",
			api.FormatWindow(window), api.FormatWindow(step), window/step, MaxSeriesPoints, api.FormatWindow(ceilSeconds(window/MaxSeriesPoints))))
	}
	return errors.Join(errs...)
}

// DefaultSeriesStep is the step of a series asked for without one: the
// shortest whole number of seconds that gives at most 360 points.
func DefaultSeriesStep(window time.Duration) time.Duration {
	return max(MinSeriesStep, ceilSeconds(window/360))
}

func ceilSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1) / time.Second * time.Second
}

// Series reports an endpoint's deployments per step over the last window,
// from this gateway's requests alone: SeriesReport of its own SeriesPart.
//
// The last 10 minutes come from the 1-second slices, exact to the second.
// Older steps are built from the 10-second slices: a 10-s slice counts in
// the step its start lies in, so there a step shorter than 10 s may be
// empty and its neighbour hold two slices' worth.
func (s *Service) Series(ctx context.Context, name string, window, step time.Duration) (SeriesReport, error) {
	g, err := s.SeriesGrid(window, step)
	if err != nil {
		return SeriesReport{}, err
	}
	p, err := s.SeriesPart(ctx, name, g)
	if err != nil {
		return SeriesReport{}, err
	}
	return s.SeriesReport(ctx, name, g, []SeriesPart{p})
}

// SeriesReport builds an endpoint's series on the grid g from the parts of
// every gateway reporting (their points added step by step), with this
// gateway's view of the endpoint: its deployments in config order, and the
// configured share from the fleet's event log. Every part must fit g
// (SeriesPart.Check).
func (s *Service) SeriesReport(ctx context.Context, name string, g SeriesGrid, parts []SeriesPart) (SeriesReport, error) {
	if err := g.Validate(); err != nil {
		return SeriesReport{}, err
	}
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return SeriesReport{}, s.notFound(name)
	}
	e := r.endpoint
	evs, err := s.store.Events(ctx, store.EventFilter{Endpoint: name})
	if err != nil {
		return SeriesReport{}, fmt.Errorf("series of %q: read events: %w", name, err)
	}

	sg := g.grid()
	rep := SeriesReport{
		Endpoint:    name,
		Window:      api.FormatWindow(g.Window),
		Step:        api.FormatWindow(g.Step),
		StepSeconds: int(sg.step),
		Start:       time.Unix(sg.first, 0).UTC(),
		End:         time.Unix(sg.last+1, 0).UTC(),
		Times:       make([]time.Time, sg.n),
		Order:       make([]string, 0, len(e.Deployments)),
		Deployments: make(map[string]DeploymentSeries, len(e.Deployments)),
	}
	for k := range sg.n {
		rep.Times[k] = time.Unix(sg.start(k), 0).UTC()
	}

	history := trafficHistory(e.Traffic, evs)
	points := make(map[string][]SeriesPoint, len(e.Deployments))
	for _, d := range e.Deployments {
		rep.Order = append(rep.Order, d.Name)
		merged := make([]SeriesPoint, sg.n)
		for _, p := range parts {
			for k, pt := range p.Deployments[d.Name] {
				if k < sg.n {
					merged[k].add(pt)
				}
			}
		}
		points[d.Name] = merged
	}
	for _, d := range e.Deployments {
		ds := DeploymentSeries{
			Requests:        make([]uint64, sg.n),
			Errors:          make([]uint64, sg.n),
			LatencyP50MS:    make([]*float64, sg.n),
			LatencyP99MS:    make([]*float64, sg.n),
			ConfiguredShare: make([]float64, sg.n),
			MeasuredShare:   make([]*float64, sg.n),
		}
		for k := range sg.n {
			p := points[d.Name][k]
			ds.Requests[k], ds.Errors[k] = p.Requests, p.Errors
			if p.Latency.Count() > 0 {
				ds.LatencyP50MS[k] = msPtr(p.Latency.Quantile(0.50))
				ds.LatencyP99MS[k] = msPtr(p.Latency.Quantile(0.99))
			}
			var split uint64
			for _, other := range points {
				split += other[k].Split
			}
			if split > 0 {
				ds.MeasuredShare[k] = ptr(float64(p.Split) / float64(split))
			}
			ds.ConfiguredShare[k] = history.share(d.Name, sg.start(k), sg.start(k)+sg.step)
		}
		rep.Deployments[d.Name] = ds
	}
	return rep, nil
}

func msPtr(d time.Duration) *float64 { return ptr(float64(d) / float64(time.Millisecond)) }

func ptr(x float64) *float64 { return &x }

// seriesGrid places n steps of step seconds so that the last one ends with
// second last, the last complete second: the current second is still
// filling up and would show as a dip at the end of every chart.
type seriesGrid struct {
	n           int
	step        int64 // seconds
	first, last int64 // unix seconds of the first and last second covered
}

// start is the first second of step k.
func (g seriesGrid) start(k int) int64 { return g.first + int64(k)*g.step }

// Ring geometry of telemetry.Recorder: 1-s slices for the last 600
// seconds, 10-s slices (aligned to multiples of 10 s) for the hour.
const (
	fineSeconds = 600
	coarseWidth = 10
)

// points reads rc's steps: 1-second slices for the part of the grid they
// still cover (from a 10-s boundary on), 10-second slices before that,
// each counted in the step its start lies in.
func (g seriesGrid) points(rc *telemetry.Recorder) []SeriesPoint {
	out := make([]SeriesPoint, g.n)
	// fineFrom is the first second read from 1-s slices: the recorder keeps
	// the 600 seconds up to last; start at the first 10-s boundary in them
	// so that no 10-s slice is split between the two.
	fineFrom := max(timeslot.CeilDiv(g.last-fineSeconds+1, coarseWidth)*coarseWidth, g.first)
	for k := range out {
		lo, hi := g.start(k), g.start(k)+g.step-1 // seconds, inclusive
		if lo < fineFrom {
			// 10-s slices starting in [lo, min(hi, fineFrom-1)].
			g.add(&out[k], rc.SumSlices(time.Unix(lo-1, 0), time.Unix(min(hi, fineFrom-1), 0), true))
		}
		if hi >= fineFrom {
			g.add(&out[k], rc.SumSlices(time.Unix(max(lo, fineFrom)-1, 0), time.Unix(hi, 0), false))
		}
	}
	return out
}

// add adds the sum of some slices to p.
func (g seriesGrid) add(p *SeriesPoint, s telemetry.Summary) {
	if s.Requests == 0 {
		return
	}
	p.add(SeriesPoint{Requests: s.Requests, Split: s.SplitRequests(), Errors: s.Errors, Latency: s.Latency})
}

func floorSec(t time.Time) int64 { return timeslot.FloorDiv(t.UnixNano(), int64(time.Second)) }

// weightHistory is an endpoint's split over time: weights[i] held from
// times[i] (unix seconds, fractional) until times[i+1]; weights[0] holds
// from the beginning of time.
type weightHistory struct {
	times   []float64
	weights []spec.Weights
}

// trafficHistory rebuilds the split over time from the endpoint's current
// split and its traffic.changed events: walking back from now, each event
// says what the split was before it.
func trafficHistory(current spec.Weights, evs []store.Event) weightHistory {
	type change struct {
		at       float64
		from, to spec.Weights
	}
	var changes []change
	for _, ev := range evs {
		if ev.Type != EventTrafficChanged {
			continue
		}
		var d struct{ From, To spec.Weights }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			continue
		}
		changes = append(changes, change{float64(ev.Time.UnixNano()) / 1e9, d.From, d.To})
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].at < changes[j].at })
	h := weightHistory{times: []float64{0}, weights: []spec.Weights{current}}
	if len(changes) > 0 {
		h.weights[0] = changes[0].from
		for _, c := range changes {
			h.times = append(h.times, c.at)
			h.weights = append(h.weights, c.to)
		}
		// The store is the truth for now, whatever the log says.
		h.weights[len(h.weights)-1] = current
	}
	return h
}

// share is dep's weight as a fraction, averaged over [from, to) seconds.
func (h weightHistory) share(dep string, from, to int64) float64 {
	lo, hi := float64(from), float64(to)
	var sum float64
	for i, w := range h.weights {
		start := h.times[i]
		end := hi
		if i+1 < len(h.times) {
			end = h.times[i+1]
		}
		a, b := max(start, lo), min(end, hi)
		if b > a {
			sum += w[dep].Fraction() * (b - a)
		}
	}
	return sum / (hi - lo)
}
