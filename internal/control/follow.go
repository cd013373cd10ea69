package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelgate/modelgate/internal/ctxtime"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// followRetry is how long Follow waits before watching again after the
// store refused a watch (etcd unreachable).
const followRetry = time.Second

// Follow keeps the routes in step with what other writers commit to the
// store: the other gateways of a fleet sharing an etcd cluster. Every
// change of endpoint state is committed with events, so Follow watches the
// event log from the last event seen at Load and, once the events that
// arrived together are read, reloads the endpoints and swaps the routes if
// any stored revision moved. With a store only this gateway writes (bbolt)
// it finds nothing to do. It returns when ctx ends or the store closes.
func (s *Service) Follow(ctx context.Context) error {
	since := s.loadedSeq.Load()
	// stale is set while events were read that no refresh has taken in
	// yet (one failed: etcd did not answer): it is retried every
	// followRetry until one succeeds, so no change is left unrouted.
	stale := false
	for ctx.Err() == nil {
		ch, err := s.store.Watch(ctx, since)
		if errors.Is(err, store.ErrClosed) {
			return nil
		}
		if err != nil {
			s.log.Warn("cannot watch the state for changes by other gateways; retrying", "err", err)
			if !ctxtime.Sleep(ctx, followRetry) {
				return nil
			}
			continue
		}
		read := 0
		for open := true; open; {
			var retry <-chan time.Time // nil: never, unless a refresh is owed
			if stale {
				retry = time.After(followRetry)
			}
			select {
			case e, ok := <-ch:
				if !ok {
					open = false
					continue
				}
				read++
				since, stale = e.Seq, true
				if len(ch) > 0 {
					continue // read what came together first
				}
			case <-retry:
			case <-ctx.Done():
				return nil
			}
			if err := s.refresh(ctx); err != nil {
				if ctx.Err() == nil {
					s.log.Error("reload the state changed by another gateway; retrying", "err", err)
				}
				continue
			}
			stale = false
		}
		// The channel closed: ctx ended, the store closed, or this reader
		// fell behind; watch again from the last event read, after a pause
		// when it closed at once (a watch the store keeps refusing).
		if read == 0 && !ctxtime.Sleep(ctx, followRetry) {
			return nil
		}
	}
	return nil
}

// Refresh reloads the endpoints and swaps the routes if another writer
// moved them: the daemon calls it when its store answers again after an
// outage.
func (s *Service) Refresh(ctx context.Context) error { return s.refresh(ctx) }

// refresh reloads the endpoints and swaps the routes if any stored
// revision differs from the snapshot's, forgetting the telemetry of
// deployments another writer removed.
func (s *Service) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	kvs, err := s.store.List(ctx, endpointPrefix)
	if err != nil {
		return fmt.Errorf("load endpoints: %w", err)
	}
	old := s.current.Load()
	snap := &snapshot{endpoints: make(map[string]record, len(kvs))}
	same := len(kvs) == len(old.endpoints)
	for _, kv := range kvs {
		var ep spec.Endpoint
		if err := json.Unmarshal(kv.Value, &ep); err != nil {
			return fmt.Errorf("load endpoint %q: %w", kv.Key, err)
		}
		snap.endpoints[ep.Name] = record{endpoint: ep, revision: kv.ModRevision}
		same = same && old.endpoints[ep.Name].revision == kv.ModRevision
	}
	if same {
		return nil
	}
	if err := s.router.SetRoutes(snap.list()); err != nil {
		return fmt.Errorf("apply routes: %w", err)
	}
	s.current.Store(snap)
	if s.telemetry != nil {
		for name, r := range old.endpoints {
			now, ok := snap.endpoints[name]
			for _, d := range r.endpoint.Deployments {
				if _, _, kept := now.endpoint.Deployment(d.Name); !ok || !kept {
					s.telemetry.Remove(name, d.Name)
				}
			}
		}
	}
	return nil
}

// storeDown is when the store stopped answering and why (nil: it answers).
type storeDown struct {
	since time.Time
	err   error
}

// SetStoreHealth records the outcome of the daemon's last probe of the
// store (cluster mode: etcd): nil when it answered. While the store does
// not answer, the gateway keeps serving the routes it has and refuses
// every write at once with store.ErrUnavailable. It reports whether the
// health changed, and for how long the store was down when it came back.
func (s *Service) SetStoreHealth(err error) (changed bool, downFor time.Duration) {
	now := s.now()
	old := s.down.Load()
	switch {
	case err == nil && old != nil:
		s.down.Store(nil)
		return true, now.Sub(old.since)
	case err != nil && old == nil:
		s.down.Store(&storeDown{since: now, err: err})
		return true, 0
	case err != nil:
		s.down.Store(&storeDown{since: old.since, err: err})
	}
	return false, 0
}

// Degraded says why the gateway serves degraded ("" when it does not):
// its store has not answered since some time, so it serves the last
// routes it knew and refuses changes.
func (s *Service) Degraded() string {
	d := s.down.Load()
	if d == nil {
		return ""
	}
	return fmt.Sprintf("the state store has not answered for %v (%v): serving the last routes known, refusing changes until it is back",
		s.now().Sub(d.since).Round(time.Second), d.err)
}

// unavailable is the error of a write while the store does not answer.
func (s *Service) unavailable() error {
	d := s.down.Load()
	if d == nil {
		return nil
	}
	return fmt.Errorf("%w for %v, so nothing can be changed: the gateway keeps serving the last routes it knew; try again when it is back (%v)",
		store.ErrUnavailable, s.now().Sub(d.since).Round(time.Second), d.err)
}
