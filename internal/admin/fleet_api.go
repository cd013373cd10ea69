package admin

// Fleet-wide reads. In cluster mode every replica measures only the
// requests it served, so GET .../metrics, .../series and .../shadow answer
// for the whole fleet by default: the replica asked reads its own raw part
// (counts and sketches, never rates or quantiles) and asks every other
// replica in the fleet's list for its part at once, over their admin APIs
// (GET /api/v1/fleet/endpoints/{ep}/{metrics|series|shadow}, with the
// caller's own token), each call bounded by FleetReadTimeout; then the
// parts are merged (control, shadow: counts add, sketches merge) and the
// report built once. A replica that does not answer in time, or answers
// something that cannot be read, is left out and named in the answer's
// "replicas" field and the X-Modelgate-Replicas header: it is never
// counted as zero traffic. ?replica=ID answers for that replica alone.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/spec"
)

// FleetReadTimeout bounds each call to another replica for a fleet-wide
// read (connection included): a replica slower than that is left out.
const FleetReadTimeout = 2 * time.Second

// PeerCaller calls another replica's admin API (*fleet.Client).
type PeerCaller interface {
	Call(ctx context.Context, p fleet.Peer, method, path, token string, in, out any) error
}

// FleetReads configure the fleet-wide answers of metrics, series and
// shadow (Options.FleetReads).
type FleetReads struct {
	// Self is this gateway's replica id, as GET /api/v1/replicas lists it.
	Self string
	// Peers calls the other replicas Options.Replicas lists. Nil: none is
	// called, and any other replica listed is reported missing.
	Peers PeerCaller
	// Timeout bounds each call to another replica. Zero: FleetReadTimeout.
	Timeout time.Duration
}

// PartAnswer is a replica's answer to GET
// /api/v1/fleet/endpoints/{ep}/{metrics|series|shadow}: its own raw part,
// for the replica building a fleet-wide answer. Internal to the fleet: its
// form may change between versions (a replica of another version that
// cannot be read is left out, and named).
type PartAnswer[P any] struct {
	Replica string `json:"replica"`
	Part    P      `json:"part"`
}

// DecodeMetricsPart reads a replica's metrics part, answered by the
// replica id.
func DecodeMetricsPart(b []byte, id string) (control.MetricsPart, error) {
	return decodePart(b, id, control.MetricsPart.Check)
}

// DecodeSeriesPart reads a replica's series part on the grid g.
func DecodeSeriesPart(b []byte, id string, g control.SeriesGrid) (control.SeriesPart, error) {
	return decodePart(b, id, func(p control.SeriesPart) error { return p.Check(g) })
}

// DecodeShadowPart reads a replica's shadow part.
func DecodeShadowPart(b []byte, id string) (shadow.Part, error) {
	return decodePart(b, id, shadow.Part.Check)
}

// decodePart reads a PartAnswer: it must come from the replica asked
// (another one answering at its address restarted, or is another), and
// its part must pass check.
func decodePart[P any](b []byte, id string, check func(P) error) (P, error) {
	var a PartAnswer[P]
	var zero P
	if err := json.Unmarshal(b, &a); err != nil {
		return zero, fmt.Errorf("its part cannot be read: %w", err)
	}
	if a.Replica != id {
		return zero, fmt.Errorf("answered as replica %q", a.Replica)
	}
	if err := check(a.Part); err != nil {
		return zero, fmt.Errorf("its part cannot be: %w", err)
	}
	return a.Part, nil
}

// fleetRead is one fleet-wide read: this gateway's part, and how to ask
// another replica for its own.
type fleetRead[P any] struct {
	// kind is the raw route's last segment: metrics, series or shadow.
	kind string
	// query is sent to the other replicas' raw route.
	query url.Values
	local func(ctx context.Context) (P, error)
	// decode reads another replica's PartAnswer.
	decode func(b []byte, id string) (P, error)
}

// gather reads the parts a metrics, series or shadow answer is built
// from: with ?replica=ID that replica's alone (this one's, or fetched from
// it: 404 for an ID the fleet does not list, 502 when it does not answer),
// else this replica's and every other listed replica's that answers within
// the timeout. It sets ReplicasHeader.
func gather[P any](s *server, w http.ResponseWriter, r *http.Request, fr fleetRead[P]) ([]P, api.Coverage, error) {
	ctx := r.Context()
	members, self := s.fleetMembers(ctx)
	if want := r.URL.Query().Get("replica"); want != "" {
		var (
			p   P
			err error
		)
		i := slices.IndexFunc(members, func(m api.Replica) bool { return m.ID == want })
		switch {
		case want == self:
			p, err = fr.local(ctx)
		case i < 0:
			err = &statusError{http.StatusNotFound, fmt.Sprintf("no replica %q in the fleet: GET /api/v1/replicas (modelgate replicas) lists them", want)}
		default:
			p, err = callPart(s, r, members[i], fr)
			if err != nil {
				err = &statusError{http.StatusBadGateway, fmt.Sprintf("replica %s did not answer: %v", want, err)}
			}
		}
		if err != nil {
			return nil, api.Coverage{}, err
		}
		w.Header().Set(api.ReplicasHeader, "1/1")
		return []P{p}, api.Coverage{Reporting: 1, Of: 1, Replica: want}, nil
	}
	p, err := fr.local(ctx)
	if err != nil {
		return nil, api.Coverage{}, err
	}
	parts := []P{p}
	cov := api.Coverage{Reporting: 1, Of: 1}
	var peers []api.Replica
	for _, m := range members {
		if m.ID != self {
			peers = append(peers, m)
		}
	}
	got := make([]P, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = callPart(s, r, m, fr)
		}()
	}
	wg.Wait()
	for i, m := range peers {
		cov.Of++
		if errs[i] != nil {
			cov.Missing = append(cov.Missing, api.MissingReplica{ID: m.ID, AdminURL: m.AdminURL, Error: errs[i].Error()})
			continue
		}
		cov.Reporting++
		parts = append(parts, got[i])
	}
	w.Header().Set(api.ReplicasHeader, strconv.Itoa(cov.Reporting)+"/"+strconv.Itoa(cov.Of))
	return parts, cov, nil
}

// callPart asks replica m for its part, with the caller's own token (so
// that a read-only token reads the fleet too), within the timeout.
func callPart[P any](s *server, r *http.Request, m api.Replica, fr fleetRead[P]) (P, error) {
	var zero P
	if s.fleet.Peers == nil {
		return zero, errors.New("this gateway does not call the other replicas")
	}
	timeout := s.fleet.Timeout
	if timeout <= 0 {
		timeout = FleetReadTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	token, _ := bearer(r.Header.Get("Authorization"))
	path := "/api/v1/fleet/endpoints/" + url.PathEscape(r.PathValue("ep")) + "/" + fr.kind
	if len(fr.query) > 0 {
		path += "?" + fr.query.Encode()
	}
	var raw json.RawMessage
	if err := s.fleet.Peers.Call(ctx, fleet.Peer{ID: m.ID, AdminURL: m.AdminURL}, http.MethodGet, path, token, nil, &raw); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			return zero, fmt.Errorf("no answer within %s", timeout)
		}
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			return zero, ue.Err // "dial tcp ...: connection refused", without the URL
		}
		return zero, err
	}
	return fr.decode(raw, m.ID)
}

// fleetMembers lists the replicas to ask, this one included, and names
// this one. The list is the fleet's (GET /api/v1/replicas); when it cannot
// be read, or the gateway is degraded (etcd does not answer), the last one
// read.
func (s *server) fleetMembers(ctx context.Context) ([]api.Replica, string) {
	self := s.fleet.Self
	var members []api.Replica
	degraded := false
	if d, ok := s.backend.(interface{ Degraded() string }); ok {
		// etcd does not answer: the last list, without waiting on it.
		degraded = d.Degraded() != ""
	}
	if last := s.lastMembers.Load(); degraded && last != nil {
		members = *last
	} else if s.replicas != nil {
		timeout := s.fleet.Timeout
		if timeout <= 0 {
			timeout = FleetReadTimeout
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		rs, err := s.replicas.Replicas(lctx)
		cancel()
		if err == nil {
			s.lastMembers.Store(&rs)
			members = rs
		} else if last := s.lastMembers.Load(); last != nil {
			members = *last
		}
	}
	if self == "" {
		for _, m := range members {
			if m.Self {
				self = m.ID
			}
		}
	}
	if self != "" && !slices.ContainsFunc(members, func(m api.Replica) bool { return m.ID == self }) {
		// Not in the list yet (its record is written just after start).
		members = append([]api.Replica{{ID: self, Self: true}}, members...)
	}
	return members, self
}

// selfID is this gateway's replica id, for the raw routes' answers.
func (s *server) selfID(ctx context.Context) string {
	if s.fleet.Self != "" {
		return s.fleet.Self
	}
	_, self := s.fleetMembers(ctx)
	return self
}

// metricsPart serves GET /api/v1/fleet/endpoints/{ep}/metrics?window=.
func (s *server) metricsPart(w http.ResponseWriter, r *http.Request) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.backend.MetricsPart(r.Context(), r.PathValue("ep"), window)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PartAnswer[control.MetricsPart]{Replica: s.selfID(r.Context()), Part: p})
}

// seriesPart serves GET /api/v1/fleet/endpoints/{ep}/series?window=&step=&end=
// (end: unix seconds, the end of the grid's last step; absent: this
// replica's last complete second).
func (s *server) seriesPart(w http.ResponseWriter, r *http.Request) {
	g, err := s.seriesGrid(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.series.SeriesPart(r.Context(), r.PathValue("ep"), g)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PartAnswer[control.SeriesPart]{Replica: s.selfID(r.Context()), Part: p})
}

// seriesGrid reads a series' grid from the query: window and step as GET
// .../series takes them, and end (unix seconds) within MaxSeriesWindow of
// this replica's clock.
func (s *server) seriesGrid(r *http.Request) (control.SeriesGrid, error) {
	window, step, err := parseSeriesQuery(r)
	if err != nil {
		return control.SeriesGrid{}, err
	}
	g, err := s.series.SeriesGrid(window, step)
	if err != nil {
		return control.SeriesGrid{}, err
	}
	v := r.URL.Query().Get("end")
	if v == "" {
		return g, nil
	}
	end, err := strconv.ParseInt(v, 10, 64)
	if err != nil || end < g.End.Unix()-int64(control.MaxSeriesWindow/time.Second) || end > g.End.Unix()+int64(control.MaxSeriesWindow/time.Second) {
		return control.SeriesGrid{}, spec.Problemf("end", "%q is not a unix second within %s of this replica's clock", v, fmtDuration(control.MaxSeriesWindow))
	}
	g.End = time.Unix(end, 0)
	return g, nil
}

// shadowPart serves GET /api/v1/fleet/endpoints/{ep}/shadow?window=.
func (s *server) shadowPart(w http.ResponseWriter, r *http.Request) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.shadows.ShadowPart(r.Context(), r.PathValue("ep"), window)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PartAnswer[shadow.Part]{Replica: s.selfID(r.Context()), Part: p})
}
