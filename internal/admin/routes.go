package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

func (s *server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	eps, err := s.backend.Endpoints(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if eps == nil {
		eps = []spec.Endpoint{}
	}
	for i := range eps {
		eps[i] = visible(r, eps[i])
	}
	writeJSON(w, http.StatusOK, api.EndpointList{Endpoints: eps})
}

// visible is the endpoint as the caller may see it: to the read-only
// token, webhooks (and the plan's confirm-promotion webhook) show their
// URL's scheme and host and hide their secret (both could forge or read
// notifications).
func visible(r *http.Request, ep spec.Endpoint) spec.Endpoint {
	if !readOnly(r) {
		return ep
	}
	return ep.Redacted()
}

func (s *server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, err := s.endpointWithETag(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, visible(r, ep))
}

// endpointWithETag reads the path's endpoint and sets the answer's ETag to
// the revision it was last written at: a write sent with If-Match and that
// ETag is refused (409) if the endpoint changed in between.
func (s *server) endpointWithETag(w http.ResponseWriter, r *http.Request) (spec.Endpoint, error) {
	ep, rev, err := s.backend.EndpointRevision(r.Context(), r.PathValue("ep"))
	if err == nil {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(rev, 10)))
	}
	return ep, err
}

// ifMatch is r's context with the revision of its If-Match header, for the
// write to check (control.IfMatch); an If-Match that is not one ETag of
// this API is a 400.
func ifMatch(r *http.Request) (*http.Request, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return r, nil
	}
	rev, err := strconv.ParseUint(strings.Trim(h, `"`), 10, 64)
	if err != nil || h == "*" {
		return r, spec.Problemf("If-Match", "%q is not an ETag of this API: send the ETag a GET of the endpoint answered, e.g. If-Match: \"42\"", h)
	}
	return r.WithContext(control.IfMatch(r.Context(), rev)), nil
}

func (s *server) getTraffic(w http.ResponseWriter, r *http.Request) {
	ep, err := s.endpointWithETag(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ep.Traffic))
}

func (s *server) putTraffic(w http.ResponseWriter, r *http.Request) {
	r, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	weights, err := readWeights(w, r, "traffic")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := forceParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep, err := s.backend.SetTraffic(ctx, r.PathValue("ep"), weights, Actor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ep.Traffic))
}

func (s *server) getMirror(w http.ResponseWriter, r *http.Request) {
	ep, err := s.endpointWithETag(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ep.Mirror))
}

func (s *server) putMirror(w http.ResponseWriter, r *http.Request) {
	r, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	weights, err := readWeights(w, r, "mirror")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, err := forceParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep, err := s.backend.SetMirror(ctx, r.PathValue("ep"), weights, Actor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ep.Mirror))
}

func (s *server) putDeployment(w http.ResponseWriter, r *http.Request) {
	r, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var d spec.Deployment
	if err := api.DecodeJSON(body, &d); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := r.PathValue("dep")
	switch d.Name {
	case "":
		d.Name = name
	case name:
	default:
		s.writeError(w, r, spec.Problemf("name", "%q does not match the deployment %q in the path", d.Name, name))
		return
	}
	ep, created, err := s.backend.PutDeployment(r.Context(), r.PathValue("ep"), d, Actor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, ep)
}

func (s *server) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	r, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep, err := s.backend.DeleteDeployment(r.Context(), r.PathValue("ep"), r.PathValue("dep"), Actor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ep)
}

func (s *server) apply(w http.ResponseWriter, r *http.Request) {
	prune := false
	if v := r.URL.Query().Get("prune"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeError(w, r, spec.Problemf("prune", "%q is not a boolean: use true or false", v))
			return
		}
		prune = b
	}
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.backend.Apply(r.Context(), body, prune, Actor)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, names := range []*[]string{&res.Created, &res.Updated, &res.Unchanged, &res.Removed} {
		if *names == nil {
			*names = []string{}
		}
	}
	s.warnUnhealthy(w, r, res) // health.go
	writeJSON(w, http.StatusOK, res)
}

// metrics serves GET /api/v1/endpoints/{ep}/metrics?window=&replica=:
// the fleet's numbers (fleet_api.go), or one replica's.
func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ep := r.PathValue("ep")
	parts, cov, err := gather(s, w, r, fleetRead[control.MetricsPart]{
		kind:   "metrics",
		query:  url.Values{"window": {api.FormatWindow(window)}},
		local:  func(ctx context.Context) (control.MetricsPart, error) { return s.backend.MetricsPart(ctx, ep, window) },
		decode: DecodeMetricsPart,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.backend.MetricsReport(r.Context(), ep, window, parts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.MetricsAnswer{MetricsReport: rep, Replicas: cov})
}

// parseWindow reads ?window=: empty is DefaultWindow; otherwise a Go
// duration from MinWindow to MaxWindow.
func parseWindow(v string) (time.Duration, error) {
	if v == "" {
		return DefaultWindow, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < MinWindow || d > MaxWindow {
		return 0, spec.Problemf("window", "%q is not a window from %s to %s, e.g. 5m", v, fmtDuration(MinWindow), fmtDuration(MaxWindow))
	}
	return d, nil
}

// fmtDuration writes 10s and 1h rather than 10s and 1h0m0s.
func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return d.String()
	}
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.EventFilter{Endpoint: q.Get("endpoint")}
	var errs []error
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, spec.Problemf("since", "%q is not an event sequence number", v))
		}
		f.Since = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, spec.Problemf("limit", "%q is not a count (0 or more)", v))
		}
		f.Limit = n
	}
	if err := errors.Join(errs...); err != nil {
		s.writeError(w, r, err)
		return
	}
	evs, err := s.backend.Events(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	writeJSON(w, http.StatusOK, api.EventList{Events: evs})
}

// nonNil makes a nil map answer {} rather than null.
func nonNil(w spec.Weights) spec.Weights {
	if w == nil {
		return spec.Weights{}
	}
	return w
}

// readBody reads the request body, at most MaxBodyBytes (more is a
// *http.MaxBytesError, answered 413).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, err
		}
		return nil, spec.Problemf("", "read request body: %v", err)
	}
	return b, nil
}

// readWeights reads a body like {"blue": 95, "green": 5}, reporting every
// weight that is not a percent with at most two decimals at its path under
// field ("traffic.green"), as the backend reports what it refuses.
func readWeights(w http.ResponseWriter, r *http.Request, field string) (spec.Weights, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	weights := spec.Weights{}
	if err := api.DecodeJSON(body, &weights); err != nil {
		return nil, spec.Prefix(field, err)
	}
	return weights, nil
}

// forceParam reads ?force=true, which changes an endpoint's traffic or
// mirror even while a rollout is moving it (control.Force).
func forceParam(r *http.Request) (context.Context, error) {
	v := r.URL.Query().Get("force")
	switch v {
	case "", "false":
		return r.Context(), nil
	case "true":
		return control.Force(r.Context()), nil
	}
	return nil, spec.Problemf("force", "%q is not a force value: use force=true, or leave it out", v)
}
