// Package admin serves modelgate's admin HTTP API on net/http: endpoints,
// traffic, mirror, deployments, apply, metrics, the event log and state
// backups under /api/v1 (bearer token required), plus /metrics, /healthz
// and /readyz (no token), and the web dashboard at / (static files; every
// call it makes needs the token). It owns no state: every call goes to a Backend,
// which the daemon's control service implements.
package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Actor is recorded in events for every change made through the API.
const Actor = "api"

// MaxBodyBytes caps a request body; a larger one is answered 413.
const MaxBodyBytes = 1 << 20

// Metrics windows accepted by GET .../metrics?window=.
const (
	DefaultWindow = 5 * time.Minute
	MinWindow     = 10 * time.Second
	MaxWindow     = time.Hour
)

// KeepAliveInterval is how often the event stream sends an SSE comment
// when no event flows, so that proxies and clients keep the connection.
const KeepAliveInterval = 15 * time.Second

// Backend is what the API reads and changes. Errors carrying
// *spec.Problem answer 400, errors wrapping store.ErrNotFound 404,
// store.ErrConflict 409, anything else 500.
type Backend interface {
	// Endpoints lists every endpoint with its deployments, traffic and mirror.
	Endpoints(ctx context.Context) ([]spec.Endpoint, error)
	// Endpoint returns one endpoint.
	Endpoint(ctx context.Context, name string) (spec.Endpoint, error)
	// EndpointRevision returns one endpoint and the revision it was last
	// written at (its ETag). Writes to an endpoint honour
	// control.IfMatch in their context.
	EndpointRevision(ctx context.Context, name string) (spec.Endpoint, uint64, error)
	// SetTraffic replaces an endpoint's live split.
	SetTraffic(ctx context.Context, endpoint string, w spec.Weights, actor string) (spec.Endpoint, error)
	// SetMirror replaces an endpoint's mirror percents.
	SetMirror(ctx context.Context, endpoint string, w spec.Weights, actor string) (spec.Endpoint, error)
	// PutDeployment creates or updates one deployment.
	PutDeployment(ctx context.Context, endpoint string, d spec.Deployment, actor string) (ep spec.Endpoint, created bool, err error)
	// DeleteDeployment removes a deployment that has no traffic or mirror.
	DeleteDeployment(ctx context.Context, endpoint, deployment, actor string) (spec.Endpoint, error)
	// Apply validates a whole config file (YAML) and applies its spec.
	Apply(ctx context.Context, file []byte, prune bool, actor string) (control.ApplyResult, error)
	// MetricsPart is this gateway's raw part of an endpoint's metrics
	// over the last window; MetricsReport the report built from the parts
	// of every replica reporting (fleet_api.go).
	MetricsPart(ctx context.Context, endpoint string, window time.Duration) (control.MetricsPart, error)
	MetricsReport(ctx context.Context, endpoint string, window time.Duration, parts []control.MetricsPart) (telemetry.Report, error)
	// Events lists stored events.
	Events(ctx context.Context, f store.EventFilter) ([]store.Event, error)
	// WatchEvents delivers every event with Seq > since, stored ones
	// first, until ctx ends; it may close the channel early, and the
	// caller then resumes from the last Seq it saw.
	WatchEvents(ctx context.Context, since uint64) (<-chan store.Event, error)
	// Ready returns nil when the daemon serves traffic, else why not.
	Ready() error
}

// Rollouts runs rollouts. Errors map to statuses as Backend's do.
type Rollouts interface {
	// Start begins a rollout on endpoint.
	Start(ctx context.Context, endpoint string, req rollout.StartRequest) (rollout.Rollout, error)
	// Act applies a manual action (pause, resume, promote, ...).
	Act(ctx context.Context, endpoint string, a rollout.Action) (rollout.Rollout, error)
	// Current returns the running rollout, or the last one.
	Current(ctx context.Context, endpoint string) (rollout.Rollout, error)
	// History lists the endpoint's rollouts, newest first.
	History(ctx context.Context, endpoint string) ([]rollout.Rollout, error)
}

// Options configure the handler built by New.
type Options struct {
	// Backend answers every API call. Required.
	Backend Backend
	// Rollouts answers the rollout routes. Nil: they answer 404.
	Rollouts Rollouts
	// Shadows answers the shadow report route. Nil: it answers 404.
	Shadows Shadows
	// Series answers GET .../series (the dashboard's charts). Nil: 404.
	Series Series
	// Replicas answers GET /api/v1/replicas. Nil: 404.
	Replicas Replicas
	// Health answers GET /api/v1/endpoints/{ep}/health (health.go). Nil: 404.
	Health Health
	// FleetReads makes metrics, series and shadow answer for every
	// replica Replicas lists (fleet_api.go). Zero: for this gateway alone.
	FleetReads FleetReads
	// Evidence answers the rollout leader's pulls, POST
	// /api/v1/fleet/evidence (cluster mode). Nil: 404.
	Evidence Evidence
	// Snapshots answers GET /api/v1/state/backup with a copy of the
	// state. Nil: 404.
	Snapshots store.Snapshotter
	// Tokens are the bearer tokens accepted on /api/v1 and /debug/pprof:
	// the admin token and the read-only token, replaced on SIGHUP by the
	// daemon. Nil: Token alone, as the admin token.
	Tokens *authtoken.Set
	// Token, when Tokens is nil, is the admin token. Empty refuses every
	// /api/v1 call: the API is never open by accident.
	Token string
	// Gatherer is served at /metrics. Nil: prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger receives internal errors (answered 500). Nil: discarded.
	Logger *slog.Logger
}

// server holds the handler's dependencies; its methods are the routes.
type server struct {
	backend   Backend
	rollouts  Rollouts
	shadows   Shadows
	series    Series
	snapshots store.Snapshotter
	replicas  Replicas
	health    Health
	evidence  Evidence
	fleet     FleetReads
	// lastMembers is the fleet's list last read, for fleet-wide reads
	// while it cannot be read.
	lastMembers atomic.Pointer[[]api.Replica]
	// backingUp is set while a backup is written: one at a time, since
	// each holds a read transaction of the store.
	backingUp atomic.Bool
	tokens    *authtoken.Set
	log       *slog.Logger
	api       *http.ServeMux
	keepAlive time.Duration
}

// New returns the admin API handler: /api/v1/... and /debug/pprof/ behind
// the bearer token, and /metrics, /healthz, /readyz open.
func New(opts Options) http.Handler {
	s := newServer(opts)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", s.authenticate(http.HandlerFunc(s.serveAPI)))
	mux.Handle("/api/v1", s.authenticate(http.HandlerFunc(s.serveAPI)))
	g := opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	// Go's profiler, for operators measuring the gateway under their own
	// load (go tool pprof -H "Authorization: Bearer ..."); behind the
	// token, since profiles show the process's internals.
	mux.Handle("/debug/pprof/", s.authenticate(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", s.authenticate(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", s.authenticate(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", s.authenticate(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", s.authenticate(http.HandlerFunc(pprof.Trace)))
	mountDashboard(mux, s.notAPI)
	return mux
}

func newServer(opts Options) *server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tokens := opts.Tokens
	if tokens == nil {
		tokens = authtoken.New(0, nil)
		tokens.Put(authtoken.Admin, opts.Token)
	}
	s := &server{
		backend:   opts.Backend,
		rollouts:  opts.Rollouts,
		shadows:   opts.Shadows,
		series:    opts.Series,
		snapshots: opts.Snapshots,
		replicas:  opts.Replicas,
		health:    opts.Health,
		evidence:  opts.Evidence,
		fleet:     opts.FleetReads,
		tokens:    tokens,
		log:       log,
		api:       http.NewServeMux(),
		keepAlive: KeepAliveInterval,
	}
	for _, rt := range apiRoutes {
		if rt.part(s) {
			h := rt.handler
			s.api.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) { h(s, w, r) })
		}
	}
	return s
}

// apiRoutes are the /api/v1 routes: their "METHOD /path" patterns, their
// handlers, and the optional part each needs (a route whose part is not
// given is not served: it answers 404).
var apiRoutes = []struct {
	pattern string
	handler func(*server, http.ResponseWriter, *http.Request)
	part    func(*server) bool
}{
	{"GET /api/v1/token", (*server).tokenInfo, always},
	{"GET /api/v1/endpoints", (*server).listEndpoints, always},
	{"GET /api/v1/endpoints/{ep}", (*server).getEndpoint, always},
	{"GET /api/v1/endpoints/{ep}/traffic", (*server).getTraffic, always},
	{"PUT /api/v1/endpoints/{ep}/traffic", (*server).putTraffic, always},
	{"GET /api/v1/endpoints/{ep}/mirror", (*server).getMirror, always},
	{"PUT /api/v1/endpoints/{ep}/mirror", (*server).putMirror, always},
	{"PUT /api/v1/endpoints/{ep}/deployments/{dep}", (*server).putDeployment, always},
	{"DELETE /api/v1/endpoints/{ep}/deployments/{dep}", (*server).deleteDeployment, always},
	{"GET /api/v1/endpoints/{ep}/metrics", (*server).metrics, always},
	{"POST /api/v1/apply", (*server).apply, always},
	{"GET /api/v1/events", (*server).events, always},
	{"GET /api/v1/events/stream", (*server).stream, always},
	{"GET /api/v1/endpoints/{ep}/shadow", (*server).shadowReport, func(s *server) bool { return s.shadows != nil }},
	{"POST /api/v1/endpoints/{ep}/rollouts", (*server).startRollout, hasRollouts},
	{"GET /api/v1/endpoints/{ep}/rollouts", (*server).rolloutHistory, hasRollouts},
	{"GET /api/v1/endpoints/{ep}/rollout", (*server).currentRollout, hasRollouts},
	{"POST /api/v1/endpoints/{ep}/rollout/{action}", (*server).rolloutAction, hasRollouts},
	{"GET /api/v1/endpoints/{ep}/series", (*server).getSeries, func(s *server) bool { return s.series != nil }},
	{"GET /api/v1/state/backup", (*server).backup, func(s *server) bool { return s.snapshots != nil }},
	{"GET /api/v1/endpoints/{ep}/health", (*server).getHealth, func(s *server) bool { return s.health != nil }},
	{"GET /api/v1/replicas", (*server).listReplicas, func(s *server) bool { return s.replicas != nil }},
	{"POST /api/v1/fleet/evidence", (*server).fleetEvidence, func(s *server) bool { return s.evidence != nil }},
	{"GET /api/v1/fleet/endpoints/{ep}/metrics", (*server).metricsPart, always},
	{"GET /api/v1/fleet/endpoints/{ep}/series", (*server).seriesPart, func(s *server) bool { return s.series != nil }},
	{"GET /api/v1/fleet/endpoints/{ep}/shadow", (*server).shadowPart, func(s *server) bool { return s.shadows != nil }},
	{"GET /api/v1/fleet/endpoints/{ep}/health", (*server).healthPart, func(s *server) bool { return s.health != nil }},
}

func always(*server) bool        { return true }
func hasRollouts(s *server) bool { return s.rollouts != nil }

// APIRoutes lists the pattern ("METHOD /path/{name}") of every /api/v1
// route, as served when every optional part is given: for documentation
// and for tests that must reach every route.
func APIRoutes() []string {
	out := make([]string, len(apiRoutes))
	for i, rt := range apiRoutes {
		out[i] = rt.pattern
	}
	return out
}

// serveAPI dispatches an authenticated /api/v1 request, answering an
// unknown path 404 and a known path with the wrong method 405 in the
// API's error JSON rather than the mux's plain text.
func (s *server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if h, pattern := s.api.Handler(r); pattern == "" {
		rec := &discardWriter{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.writeError(w, r, &statusError{http.StatusMethodNotAllowed, "method " + r.Method + " not allowed on " + r.URL.Path})
			return
		}
		s.writeError(w, r, &statusError{http.StatusNotFound, "no such API path: " + r.URL.Path})
		return
	}
	s.api.ServeHTTP(w, r)
}

// discardWriter records the status the mux would answer for an
// unmatched request, so that serveAPI can tell 404 from 405.
type discardWriter struct {
	header http.Header
	status int
}

// Header returns the recorded header (the mux sets Allow on a 405).
func (d *discardWriter) Header() http.Header { return d.header }

// Write discards the mux's plain-text body.
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// WriteHeader records the status.
func (d *discardWriter) WriteHeader(status int) { d.status = status }

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.backend.Ready(); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	// Degraded is still ready: the gateway serves the routes it has, and a
	// load balancer that took every replica out during an etcd outage
	// would turn it into a full one.
	if d, ok := s.backend.(interface{ Degraded() string }); ok {
		if why := d.Degraded(); why != "" {
			writeText(w, http.StatusOK, "degraded: "+why)
			return
		}
	}
	writeText(w, http.StatusOK, "ok")
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}
