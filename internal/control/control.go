// Package control is the one writer of endpoint state: it validates every
// change (API, apply, later the rollout controller), commits it with its
// events to the store in one transaction, and only then swaps the routing
// table, so that a rejected change changes nothing.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Event types written by the control service.
const (
	EventEndpointCreated   = "endpoint.created"
	EventEndpointUpdated   = "endpoint.updated"
	EventEndpointRemoved   = "endpoint.removed"
	EventDeploymentCreated = "deployment.created"
	EventDeploymentUpdated = "deployment.updated"
	EventDeploymentRemoved = "deployment.removed"
	EventTrafficChanged    = "traffic.changed"
	EventMirrorChanged     = "mirror.changed"
)

const endpointPrefix = "endpoints/"

// ApplyResult is api.ApplyResult, the wire form.
type ApplyResult = api.ApplyResult

// Router receives the complete set of endpoints after every committed
// change. The proxy implements it; SetRoutes swaps its table atomically.
type Router interface {
	SetRoutes(endpoints []spec.Endpoint) error
}

// Options configures a Service.
type Options struct {
	Store     store.Store
	Router    Router
	Telemetry *telemetry.Registry
	Logger    *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service validates, persists and applies endpoint changes.
type Service struct {
	store     store.Store
	router    Router
	telemetry *telemetry.Registry
	log       *slog.Logger
	now       func() time.Time

	// mu serialises writers in this process; the store's revision checks
	// guard against writers elsewhere (cluster mode).
	mu      sync.Mutex
	current atomic.Pointer[snapshot]
	loaded  atomic.Bool
	// loadedSeq is the last event's Seq when Load read the state: Follow
	// watches from it.
	loadedSeq atomic.Uint64
	// down is set while the store does not answer (SetStoreHealth).
	down atomic.Pointer[storeDown]
}

// snapshot is the committed state as last pushed to the router.
type snapshot struct {
	endpoints map[string]record
}

type record struct {
	endpoint spec.Endpoint
	revision uint64
}

// New builds a Service. Call Load before serving.
func New(opts Options) *Service {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: opts.Store, router: opts.Router, telemetry: opts.Telemetry, log: log, now: now}
	s.current.Store(&snapshot{endpoints: map[string]record{}})
	return s
}

// Load reads every endpoint from the store and pushes the routes.
func (s *Service) Load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The last event first: a change committed while the state is read is
	// then seen again by Follow, never missed.
	seq, err := s.store.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		return err
	}
	s.loadedSeq.Store(seq)
	s.loaded.Store(true)
	return nil
}

// reload rebuilds the snapshot from the store and pushes routes. Caller holds mu.
func (s *Service) reload(ctx context.Context) error {
	kvs, err := s.store.List(ctx, endpointPrefix)
	if err != nil {
		return fmt.Errorf("load endpoints: %w", err)
	}
	snap := &snapshot{endpoints: make(map[string]record, len(kvs))}
	for _, kv := range kvs {
		var ep spec.Endpoint
		if err := json.Unmarshal(kv.Value, &ep); err != nil {
			return fmt.Errorf("load endpoint %q: %w", kv.Key, err)
		}
		snap.endpoints[ep.Name] = record{endpoint: ep, revision: kv.ModRevision}
	}
	if err := s.router.SetRoutes(snap.list()); err != nil {
		return fmt.Errorf("apply routes: %w", err)
	}
	s.current.Store(snap)
	return nil
}

func (sn *snapshot) list() []spec.Endpoint {
	out := make([]spec.Endpoint, 0, len(sn.endpoints))
	for _, r := range sn.endpoints {
		out = append(out, r.endpoint.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready reports whether the state has been loaded and routes are live.
func (s *Service) Ready() error {
	if !s.loaded.Load() {
		return errors.New("state not loaded yet")
	}
	return nil
}

// Endpoints returns every endpoint, sorted by name.
func (s *Service) Endpoints(ctx context.Context) ([]spec.Endpoint, error) {
	return s.current.Load().list(), nil
}

// Endpoint returns one endpoint or an error wrapping store.ErrNotFound.
func (s *Service) Endpoint(ctx context.Context, name string) (spec.Endpoint, error) {
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return spec.Endpoint{}, s.notFound(name)
	}
	return r.endpoint.Clone(), nil
}

// EndpointRevision returns one endpoint with the store revision it was
// last written at (an HTTP ETag), or an error wrapping store.ErrNotFound.
func (s *Service) EndpointRevision(ctx context.Context, name string) (spec.Endpoint, uint64, error) {
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return spec.Endpoint{}, 0, s.notFound(name)
	}
	return r.endpoint.Clone(), r.revision, nil
}

type ifMatchKey struct{}

// IfMatch returns ctx carrying the revision the endpoint a write changes
// must still be at (HTTP If-Match): a write whose endpoint moved on since
// the caller read it fails with store.ErrConflict instead of overwriting
// what the caller has not seen, whichever gateway of a fleet wrote it.
func IfMatch(ctx context.Context, revision uint64) context.Context {
	return context.WithValue(ctx, ifMatchKey{}, revision)
}

// ExpectedRevision is the revision IfMatch put in ctx, if any.
func ExpectedRevision(ctx context.Context) (uint64, bool) {
	rev, ok := ctx.Value(ifMatchKey{}).(uint64)
	return rev, ok
}

// checkIfMatch is the conflict of a write to endpoint name at revision
// have when ctx carries another expected revision; nil otherwise.
func checkIfMatch(ctx context.Context, name string, have uint64) error {
	want, ok := ExpectedRevision(ctx)
	if !ok || want == have {
		return nil
	}
	return conflictf("endpoint %q is at revision %d, not %d (If-Match): read it again and retry", name, have, want)
}

// change is one endpoint write of a transaction with its events.
type change struct {
	name     string
	endpoint *spec.Endpoint // nil: delete
	events   []store.Event
	// extra keys written in the same transaction (a rollout's state).
	extra []store.Op
}

// commit writes changes in one store transaction guarded by the revisions
// the snapshot holds, then reloads routes. Caller holds mu.
func (s *Service) commit(ctx context.Context, changes []change) error {
	_, err := s.commitEvents(ctx, changes)
	return err
}

// commitEvents is commit that also returns the events as stored (with
// their Seq). Caller holds mu.
func (s *Service) commitEvents(ctx context.Context, changes []change) ([]store.Event, error) {
	if err := s.unavailable(); err != nil {
		return nil, err
	}
	snap := s.current.Load()
	txn := store.Txn{ExpectRevisions: map[string]uint64{}}
	for _, c := range changes {
		key := endpointPrefix + c.name
		if err := checkIfMatch(ctx, c.name, snap.endpoints[c.name].revision); err != nil {
			return nil, err
		}
		txn.ExpectRevisions[key] = snap.endpoints[c.name].revision
		if c.endpoint == nil {
			txn.Ops = append(txn.Ops, store.Op{Key: key, Delete: true})
		} else {
			value, err := json.Marshal(c.endpoint)
			if err != nil {
				return nil, fmt.Errorf("encode endpoint %q: %w", c.name, err)
			}
			txn.Ops = append(txn.Ops, store.Op{Key: key, Value: value})
		}
		txn.Events = append(txn.Events, c.events...)
		txn.Ops = append(txn.Ops, c.extra...)
	}
	if len(txn.Ops) == 0 {
		return nil, nil
	}
	now := s.now().UTC()
	for i := range txn.Events {
		txn.Events[i].Time = now
	}
	_, stored, err := s.store.Commit(ctx, txn)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Someone else wrote: take their state so the next try sees it.
			if rerr := s.reload(ctx); rerr != nil {
				s.log.Error("reload after conflict", "err", rerr)
			}
			return nil, fmt.Errorf("state changed concurrently, try again: %w", err)
		}
		return nil, fmt.Errorf("commit: %w", err)
	}
	return stored, s.reload(ctx)
}

func event(endpoint, typ, actor, message string, data any) store.Event {
	e := store.Event{Endpoint: endpoint, Type: typ, Actor: actor, Message: message}
	if data != nil {
		e.Data, _ = json.Marshal(data)
	}
	return e
}

// FormatWeights renders weights in deployment order, e.g. "blue=95 green=5".
func FormatWeights(e spec.Endpoint, w spec.Weights) string {
	var parts []string
	for _, d := range e.Deployments {
		if v, ok := w[d.Name]; ok && v != 0 {
			parts = append(parts, d.Name+"="+v.String())
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// SetTraffic replaces an endpoint's traffic weights.
func (s *Service) SetTraffic(ctx context.Context, name string, w spec.Weights, actor string) (spec.Endpoint, error) {
	return s.setWeights(ctx, name, w, actor, true)
}

// SetMirror replaces an endpoint's mirror percents.
func (s *Service) SetMirror(ctx context.Context, name string, w spec.Weights, actor string) (spec.Endpoint, error) {
	return s.setWeights(ctx, name, w, actor, false)
}

func (s *Service) setWeights(ctx context.Context, name string, w spec.Weights, actor string, traffic bool) (spec.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return spec.Endpoint{}, s.notFound(name)
	}
	cur := r.endpoint
	next := cur.Clone()
	// Validate before zero weights are dropped: a typo with weight 0 is
	// still an unknown deployment.
	field, typ, old := "mirror", EventMirrorChanged, cur.Mirror
	validate := spec.ValidateMirror
	if traffic {
		field, typ, old = "traffic", EventTrafficChanged, cur.Traffic
		validate = spec.ValidateTraffic
	}
	if err := spec.Prefix(field, validate(cur, w)); err != nil {
		return spec.Endpoint{}, err
	}
	w = dropZeros(w)
	if traffic {
		next.Traffic = w
	} else {
		next.Mirror = w
	}
	if old.Equal(w) {
		// Nothing to write, but a stale If-Match is refused all the same.
		return cur.Clone(), checkIfMatch(ctx, name, s.current.Load().endpoints[name].revision)
	}
	// Read after the snapshot: a rollout that begins after this read
	// changes the endpoint's revision, so the commit below conflicts.
	active, err := s.activeRollout(ctx, name)
	if err != nil {
		return spec.Endpoint{}, err
	}
	forced := ""
	if active != nil {
		if !Forced(ctx) {
			return spec.Endpoint{}, &RolloutActiveError{Endpoint: name, Field: field, ID: active.ID, Phase: active.Phase}
		}
		forced = fmt.Sprintf(" (forced during rollout %s, %s)", active.ID, active.Phase)
	}
	msg := fmt.Sprintf("%s of %s set to %s (was %s)%s", field, name, FormatWeights(cur, w), FormatWeights(cur, old), forced)
	ev := event(name, typ, actor, msg, map[string]spec.Weights{"from": old, "to": w})
	if err := s.commit(ctx, []change{{name: name, endpoint: &next, events: []store.Event{ev}}}); err != nil {
		return spec.Endpoint{}, err
	}
	return next.Clone(), nil
}

// RolloutChange is what the rollout controller commits for one endpoint:
// an optional new split, an optional mirror percent for one deployment,
// the rollout's own record and its events, all in one transaction.
type RolloutChange struct {
	Endpoint string
	// Traffic, when not nil, replaces the split.
	Traffic spec.Weights
	// MirrorDeployment and Mirror, when Mirror is not nil, set that
	// deployment's mirror percent (0 removes it).
	MirrorDeployment string
	Mirror           *spec.Percent
	// Ops are written in the same transaction (the rollout record).
	Ops []store.Op
	// Events are the rollout's events; traffic and mirror events are added.
	Events []store.Event
}

// CommitRollout validates and commits a rollout's change atomically with
// the routing change it implies. Traffic and mirror events carry actor
// "rollout".
func (s *Service) CommitRollout(ctx context.Context, c RolloutChange) (spec.Endpoint, []store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.current.Load().endpoints[c.Endpoint]
	if !ok {
		return spec.Endpoint{}, nil, s.notFound(c.Endpoint)
	}
	cur := r.endpoint
	next := cur.Clone()
	events := append([]store.Event(nil), c.Events...)
	const actor = "rollout"
	if c.Traffic != nil {
		if err := spec.Prefix("traffic", spec.ValidateTraffic(cur, c.Traffic)); err != nil {
			return spec.Endpoint{}, nil, err
		}
		next.Traffic = dropZeros(c.Traffic)
		if !cur.Traffic.Equal(next.Traffic) {
			msg := fmt.Sprintf("traffic of %s set to %s (was %s)", c.Endpoint, FormatWeights(cur, next.Traffic), FormatWeights(cur, cur.Traffic))
			events = append(events, event(c.Endpoint, EventTrafficChanged, actor, msg, map[string]spec.Weights{"from": cur.Traffic, "to": next.Traffic}))
		}
	}
	if c.Mirror != nil {
		m := next.Mirror.Clone()
		if m == nil {
			m = spec.Weights{}
		}
		m[c.MirrorDeployment] = *c.Mirror
		if err := spec.Prefix("mirror", spec.ValidateMirror(cur, m)); err != nil {
			return spec.Endpoint{}, nil, err
		}
		next.Mirror = dropZeros(m)
		if !cur.Mirror.Equal(next.Mirror) {
			msg := fmt.Sprintf("mirror of %s set to %s (was %s)", c.Endpoint, FormatWeights(cur, next.Mirror), FormatWeights(cur, cur.Mirror))
			events = append(events, event(c.Endpoint, EventMirrorChanged, actor, msg, map[string]spec.Weights{"from": cur.Mirror, "to": next.Mirror}))
		}
	}
	ch := change{name: c.Endpoint, endpoint: &next, events: events, extra: c.Ops}
	if c.Traffic == nil && c.Mirror == nil {
		ch.endpoint = &cur // unchanged, but still guarded by its revision
	}
	stored, err := s.commitEvents(ctx, []change{ch})
	if err != nil {
		return spec.Endpoint{}, nil, err
	}
	return next.Clone(), stored, nil
}

// dropZeros removes zero weights so that stored weights compare cleanly.
func dropZeros(w spec.Weights) spec.Weights {
	out := spec.Weights{}
	for k, v := range w {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// PutDeployment creates or updates one deployment of an endpoint. A new
// deployment starts with no traffic.
func (s *Service) PutDeployment(ctx context.Context, name string, d spec.Deployment, actor string) (spec.Endpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return spec.Endpoint{}, false, s.notFound(name)
	}
	if err := d.Validate(); err != nil {
		return spec.Endpoint{}, false, err
	}
	if err := config.CheckTLSFiles(d); err != nil {
		return spec.Endpoint{}, false, spec.Prefix("tls", err)
	}
	d = d.WithDefaults()
	next := r.endpoint.Clone()
	old, i, exists := next.Deployment(d.Name)
	if exists {
		if deploymentEqual(old, d) {
			return next, false, checkIfMatch(ctx, name, r.revision)
		}
		next.Deployments[i] = d
	} else {
		next.Deployments = append(next.Deployments, d)
	}
	if err := next.Validate(); err != nil {
		return spec.Endpoint{}, false, err
	}
	typ, verb := EventDeploymentUpdated, "updated"
	if !exists {
		typ, verb = EventDeploymentCreated, "created"
	}
	ev := event(name, typ, actor, fmt.Sprintf("deployment %s/%s %s", name, d.Name, verb), d)
	if err := s.commit(ctx, []change{{name: name, endpoint: &next, events: []store.Event{ev}}}); err != nil {
		return spec.Endpoint{}, false, err
	}
	return next.Clone(), !exists, nil
}

// DeleteDeployment removes a deployment that has no traffic and no mirror.
func (s *Service) DeleteDeployment(ctx context.Context, name, dep, actor string) (spec.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.current.Load().endpoints[name]
	if !ok {
		return spec.Endpoint{}, s.notFound(name)
	}
	if _, _, exists := r.endpoint.Deployment(dep); !exists {
		return spec.Endpoint{}, &sentinelError{msg: fmt.Sprintf("deployment %q not found in endpoint %q%s", dep, name, spec.Known(dep, depNames(r.endpoint), "its deployments")), sentinel: store.ErrNotFound}
	}
	if err := removable(r.endpoint, dep); err != nil {
		return spec.Endpoint{}, err
	}
	next := withoutDeployment(r.endpoint, dep)
	ev := event(name, EventDeploymentRemoved, actor, fmt.Sprintf("deployment %s/%s removed", name, dep), map[string]string{"deployment": dep})
	if err := s.commit(ctx, []change{{name: name, endpoint: &next, events: []store.Event{ev}}}); err != nil {
		return spec.Endpoint{}, err
	}
	if s.telemetry != nil {
		s.telemetry.Remove(name, dep)
	}
	return next.Clone(), nil
}

// removable refuses to remove a deployment that still serves traffic or
// receives a mirror, or the last one.
func removable(e spec.Endpoint, dep string) error {
	if v := e.Traffic[dep]; v > 0 {
		return conflictf("deployment %q of endpoint %q still has %s%% of traffic; move it first", dep, e.Name, v)
	}
	if v := e.Mirror[dep]; v > 0 {
		return conflictf("deployment %q of endpoint %q still receives a %s%% mirror; set it to 0 first", dep, e.Name, v)
	}
	if len(e.Deployments) == 1 {
		return conflictf("deployment %q is the last one of endpoint %q: an endpoint keeps at least one", dep, e.Name)
	}
	return nil
}

func withoutDeployment(e spec.Endpoint, dep string) spec.Endpoint {
	next := e.Clone()
	next.Deployments = next.Deployments[:0]
	for _, d := range e.Clone().Deployments {
		if d.Name != dep {
			next.Deployments = append(next.Deployments, d)
		}
	}
	delete(next.Traffic, dep)
	delete(next.Mirror, dep)
	return next
}

func deploymentEqual(a, b spec.Deployment) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Metrics reports an endpoint's per-deployment numbers over window, from
// this gateway's requests alone: MetricsReport of its own MetricsPart.
func (s *Service) Metrics(ctx context.Context, name string, window time.Duration) (telemetry.Report, error) {
	p, err := s.MetricsPart(ctx, name, window)
	if err != nil {
		return telemetry.Report{}, err
	}
	return s.MetricsReport(ctx, name, window, []MetricsPart{p})
}

// Baseline is the deployment with the most configured traffic; ties go to
// the first in config order. (During a rollout it will be the stable.)
func Baseline(e spec.Endpoint) string {
	best, bestWeight := "", spec.Percent(-1)
	for _, d := range e.Deployments {
		if w := e.Traffic[d.Name]; w > bestWeight {
			best, bestWeight = d.Name, w
		}
	}
	return best
}

// Events lists stored events.
func (s *Service) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	return s.store.Events(ctx, f)
}

// WatchEvents streams events after since.
func (s *Service) WatchEvents(ctx context.Context, since uint64) (<-chan store.Event, error) {
	return s.store.Watch(ctx, since)
}

// Apply parses a config file and applies its spec (see ApplyFile).
func (s *Service) Apply(ctx context.Context, data []byte, prune bool, actor string) (ApplyResult, error) {
	f, err := config.Parse(data)
	if err != nil {
		return ApplyResult{}, err
	}
	return s.ApplyFile(ctx, f, prune, actor)
}
