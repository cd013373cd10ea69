// Package admintest provides an in-memory admin.Backend for tests of the
// admin API and of its clients (the CLI). It validates changes with the
// same spec checks the control service uses and reports errors the same
// way (problems, store.ErrNotFound, store.ErrConflict), but keeps no
// durable state and routes nothing.
package admintest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// EventTime is the time of every event the Backend records, so that
// tests can compare output exactly.
var EventTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// Backend is an in-memory admin.Backend. Set the exported fields before
// serving; read what it recorded through its methods. It is safe for
// concurrent use.
type Backend struct {
	// ApplyResult is what Apply answers.
	ApplyResult control.ApplyResult
	// ApplyErr, when set, is what Apply fails with.
	ApplyErr error
	// Report is what Metrics answers for a known endpoint.
	Report telemetry.Report
	// ListErr, when set, is what Endpoints fails with.
	ListErr error
	// WatchCloseAfter, when > 0, closes every watch channel after that
	// many events, as a store does to a consumer that falls behind.
	WatchCloseAfter int

	mu        sync.Mutex
	endpoints map[string]spec.Endpoint
	events    []store.Event
	changes   int
	revisions map[string]uint64 // an endpoint's revision: the change count when last written
	wake      []chan struct{}
	readyErr  error
	applied   []byte
	prune     bool
	window    time.Duration
	filter    store.EventFilter
	watches   int
	watchers  sync.WaitGroup
}

// NewBackend returns a Backend serving copies of endpoints.
func NewBackend(endpoints ...spec.Endpoint) *Backend {
	b := &Backend{endpoints: map[string]spec.Endpoint{}, revisions: map[string]uint64{}}
	for _, ep := range endpoints {
		b.endpoints[ep.Name] = ep.Clone()
	}
	return b
}

// Fraud returns the endpoint most tests use: "fraud" with deployments
// blue and green, all traffic on blue, no mirror.
func Fraud() spec.Endpoint {
	return spec.Endpoint{
		Name: "fraud",
		Deployments: []spec.Deployment{
			{Name: "blue", Backends: []string{"http://127.0.0.1:9001"}},
			{Name: "green", Backends: []string{"http://127.0.0.1:9002"}},
		},
		Traffic: spec.Weights{"blue": spec.Full},
		Mirror:  spec.Weights{},
	}
}

func (b *Backend) endpoint(name string) (spec.Endpoint, error) {
	ep, ok := b.endpoints[name]
	if !ok {
		return spec.Endpoint{}, fmt.Errorf("endpoint %q: %w", name, store.ErrNotFound)
	}
	return ep.Clone(), nil
}

// record stores a change with its event; b.mu must be held.
func (b *Backend) record(ep spec.Endpoint, typ, actor string) {
	b.endpoints[ep.Name] = ep
	b.changes++
	b.revisions[ep.Name] = uint64(b.changes)
	b.addEvent(store.Event{Endpoint: ep.Name, Type: typ, Actor: actor, Message: typ + " " + ep.Name})
}

// AddEvent appends an event to the log (Seq and Time are set) and wakes
// every watcher. It returns the event as stored.
func (b *Backend) AddEvent(ev store.Event) store.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addEvent(ev)
}

func (b *Backend) addEvent(ev store.Event) store.Event {
	ev.Seq = uint64(len(b.events) + 1)
	ev.Time = EventTime
	b.events = append(b.events, ev)
	for _, c := range b.wake {
		close(c)
	}
	b.wake = nil
	return ev
}

// EventLog returns a copy of every event recorded.
func (b *Backend) EventLog() []store.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]store.Event(nil), b.events...)
}

// Snapshot returns copies of the endpoints and the number of changes
// made so far, so that a test can prove a refused call changed nothing.
func (b *Backend) Snapshot() (map[string]spec.Endpoint, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]spec.Endpoint, len(b.endpoints))
	for k, v := range b.endpoints {
		out[k] = v.Clone()
	}
	return out, b.changes
}

// LastApply returns the file and prune flag of the last successful Apply.
func (b *Backend) LastApply() (file []byte, prune bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.applied, b.prune
}

// LastWindow returns the window of the last Metrics call.
func (b *Backend) LastWindow() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.window
}

// LastFilter returns the filter of the last Events call.
func (b *Backend) LastFilter() store.EventFilter {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.filter
}

// Watches returns how many times WatchEvents was called.
func (b *Backend) Watches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches
}

// WaitWatchers waits until every watch has ended (its context is done).
func (b *Backend) WaitWatchers() { b.watchers.Wait() }

// SetReady sets what Ready answers.
func (b *Backend) SetReady(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readyErr = err
}

// Endpoints implements admin.Backend.
func (b *Backend) Endpoints(ctx context.Context) ([]spec.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ListErr != nil {
		return nil, b.ListErr
	}
	var out []spec.Endpoint
	for _, ep := range b.endpoints {
		out = append(out, ep.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Endpoint implements admin.Backend.
func (b *Backend) Endpoint(ctx context.Context, name string) (spec.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.endpoint(name)
}

// EndpointRevision implements admin.Backend: the revision is the number of
// changes made when the endpoint was last written (0 for one never written).
func (b *Backend) EndpointRevision(ctx context.Context, name string) (spec.Endpoint, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, err := b.endpoint(name)
	return ep, b.revisions[name], err
}

// checkIfMatch refuses a write when ctx carries an If-Match revision the
// endpoint is no longer at (control.IfMatch); b.mu must be held.
func (b *Backend) checkIfMatch(ctx context.Context, name string) error {
	if want, ok := control.ExpectedRevision(ctx); ok && want != b.revisions[name] {
		return fmt.Errorf("endpoint %q is at revision %d, not %d (If-Match): %w", name, b.revisions[name], want, store.ErrConflict)
	}
	return nil
}

// SetTraffic implements admin.Backend.
func (b *Backend) SetTraffic(ctx context.Context, name string, w spec.Weights, actor string) (spec.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, err := b.endpoint(name)
	if err != nil {
		return spec.Endpoint{}, err
	}
	if err := b.checkIfMatch(ctx, name); err != nil {
		return spec.Endpoint{}, err
	}
	if err := spec.ValidateTraffic(ep, w); err != nil {
		return spec.Endpoint{}, spec.Prefix("traffic", err)
	}
	ep.Traffic = w.Clone()
	b.record(ep, "traffic.changed", actor)
	return ep, nil
}

// SetMirror implements admin.Backend.
func (b *Backend) SetMirror(ctx context.Context, name string, w spec.Weights, actor string) (spec.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, err := b.endpoint(name)
	if err != nil {
		return spec.Endpoint{}, err
	}
	if err := b.checkIfMatch(ctx, name); err != nil {
		return spec.Endpoint{}, err
	}
	if err := spec.ValidateMirror(ep, w); err != nil {
		return spec.Endpoint{}, spec.Prefix("mirror", err)
	}
	ep.Mirror = w.Clone()
	b.record(ep, "mirror.changed", actor)
	return ep, nil
}

// PutDeployment implements admin.Backend.
func (b *Backend) PutDeployment(ctx context.Context, name string, d spec.Deployment, actor string) (spec.Endpoint, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, err := b.endpoint(name)
	if err != nil {
		return spec.Endpoint{}, false, err
	}
	if err := b.checkIfMatch(ctx, name); err != nil {
		return spec.Endpoint{}, false, err
	}
	if err := d.Validate(); err != nil {
		return spec.Endpoint{}, false, err
	}
	_, i, exists := ep.Deployment(d.Name)
	if exists {
		ep.Deployments[i] = d
	} else {
		ep.Deployments = append(ep.Deployments, d)
	}
	b.record(ep, "deployment.put", actor)
	return ep, !exists, nil
}

// DeleteDeployment implements admin.Backend.
func (b *Backend) DeleteDeployment(ctx context.Context, name, dep, actor string) (spec.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, err := b.endpoint(name)
	if err != nil {
		return spec.Endpoint{}, err
	}
	if err := b.checkIfMatch(ctx, name); err != nil {
		return spec.Endpoint{}, err
	}
	_, i, ok := ep.Deployment(dep)
	if !ok {
		return spec.Endpoint{}, fmt.Errorf("deployment %s/%s: %w", name, dep, store.ErrNotFound)
	}
	if ep.Traffic[dep] > 0 || ep.Mirror[dep] > 0 {
		return spec.Endpoint{}, fmt.Errorf("deployment %s/%s still has traffic or mirror: %w", name, dep, store.ErrConflict)
	}
	ep.Deployments = append(ep.Deployments[:i], ep.Deployments[i+1:]...)
	b.record(ep, "deployment.removed", actor)
	return ep, nil
}

// Apply implements admin.Backend: it records the file and answers
// ApplyResult or ApplyErr.
func (b *Backend) Apply(ctx context.Context, file []byte, prune bool, actor string) (control.ApplyResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ApplyErr != nil {
		return control.ApplyResult{}, b.ApplyErr
	}
	b.applied, b.prune = file, prune
	b.changes++
	return b.ApplyResult, nil
}

// MetricsPart implements admin.Backend: it records the window and answers
// an empty part for a known endpoint.
func (b *Backend) MetricsPart(ctx context.Context, name string, window time.Duration) (control.MetricsPart, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.endpoint(name); err != nil {
		return control.MetricsPart{}, err
	}
	b.window = window
	return control.MetricsPart{Deployments: map[string]telemetry.Summary{}}, nil
}

// MetricsReport implements admin.Backend: it answers Report for a known
// endpoint, whatever the parts.
func (b *Backend) MetricsReport(ctx context.Context, name string, window time.Duration, parts []control.MetricsPart) (telemetry.Report, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.endpoint(name); err != nil {
		return telemetry.Report{}, err
	}
	return b.Report, nil
}

// Events implements admin.Backend.
func (b *Backend) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.filter = f
	var out []store.Event
	for _, ev := range b.events {
		if ev.Seq <= f.Since || (f.Endpoint != "" && ev.Endpoint != f.Endpoint) {
			continue
		}
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
		out = append(out, ev)
	}
	return out, nil
}

// WatchEvents implements admin.Backend: it sends the stored events after
// since, then new ones as they are added, until ctx ends (or
// WatchCloseAfter events were sent).
func (b *Backend) WatchEvents(ctx context.Context, since uint64) (<-chan store.Event, error) {
	b.mu.Lock()
	b.watches++
	closeAfter := b.WatchCloseAfter
	b.mu.Unlock()
	out := make(chan store.Event)
	b.watchers.Add(1)
	go func() {
		defer b.watchers.Done()
		defer close(out)
		next, sent := since, 0
		for {
			b.mu.Lock()
			pending := append([]store.Event(nil), b.events[min(int(next), len(b.events)):]...)
			wake := make(chan struct{})
			b.wake = append(b.wake, wake)
			b.mu.Unlock()
			for _, ev := range pending {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				next, sent = ev.Seq, sent+1
				if closeAfter > 0 && sent == closeAfter {
					return
				}
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Ready implements admin.Backend.
func (b *Backend) Ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readyErr
}
