package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// ApplyFile applies a parsed config file's spec in one transaction, as
// kubectl apply does: it creates and updates what the file declares and
// removes nothing it does not list unless prune is set. Traffic and mirror
// in the file only initialise endpoints the store does not know yet. A
// file that would remove a deployment still holding traffic or mirror is
// refused whole (ErrConflict).
func (s *Service) ApplyFile(ctx context.Context, f *config.File, prune bool, actor string) (ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.current.Load()
	res := ApplyResult{Created: []string{}, Updated: []string{}, Unchanged: []string{}, Removed: []string{}}
	var changes []change
	var errs []error
	declared := map[string]bool{}
	for i, fe := range f.Endpoints {
		want := fe.WithDefaults()
		declared[want.Name] = true
		if err := config.CheckFiles(want); err != nil {
			errs = append(errs, spec.Prefix(fmt.Sprintf("endpoints[%d]", i), err))
			continue
		}
		r, exists := snap.endpoints[want.Name]
		if !exists {
			ev := event(want.Name, EventEndpointCreated, actor, fmt.Sprintf("endpoint %s created with traffic %s", want.Name, FormatWeights(want, want.Traffic)), want.Redacted())
			changes = append(changes, change{name: want.Name, endpoint: &want, events: []store.Event{ev}})
			res.Created = append(res.Created, want.Name)
			for _, d := range want.Deployments {
				res.Created = append(res.Created, want.Name+"/"+d.Name)
			}
			continue
		}
		next, events, err := s.merge(r.endpoint, want, prune, actor, &res)
		if errors.Is(err, store.ErrConflict) {
			errs = append(errs, err) // keep the conflict: it answers 409, not 400
			continue
		}
		if err != nil {
			errs = append(errs, spec.Prefix(fmt.Sprintf("endpoints[%d]", i), err))
			continue
		}
		if len(events) == 0 {
			continue
		}
		changes = append(changes, change{name: want.Name, endpoint: &next, events: events})
	}
	if prune {
		var gone []string
		for name := range snap.endpoints {
			if !declared[name] {
				gone = append(gone, name)
			}
		}
		sort.Strings(gone)
		for _, name := range gone {
			ev := event(name, EventEndpointRemoved, actor, fmt.Sprintf("endpoint %s removed (not in the applied file)", name), nil)
			changes = append(changes, change{name: name, events: []store.Event{ev}})
			res.Removed = append(res.Removed, name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ApplyResult{}, err
	}
	if len(changes) == 0 {
		// Nothing to store, but the routes are set again all the same: that
		// is when override secret files and deployments' tls files are
		// read, so that applying after rotating one takes the new one
		// (docs/configuration.md).
		if err := s.reload(ctx); err != nil {
			return ApplyResult{}, err
		}
	} else if err := s.commit(ctx, changes); err != nil {
		return ApplyResult{}, err
	}
	if s.telemetry != nil {
		for _, name := range res.Removed {
			if r, ok := snap.endpoints[name]; ok {
				for _, d := range r.endpoint.Deployments {
					s.telemetry.Remove(name, d.Name)
				}
			} else if ep, dep, ok := cutPath(name); ok {
				s.telemetry.Remove(ep, dep)
			}
		}
	}
	return res, nil
}

// endpointSettings renders the endpoint's own spec (everything but its
// deployments and its traffic and mirror state) for comparison.
func endpointSettings(e spec.Endpoint) string {
	b, _ := json.Marshal(struct {
		StickyHeader string         `json:"sticky_header,omitempty"`
		Override     *spec.Override `json:"override,omitempty"`
		Compare      *spec.Compare  `json:"compare,omitempty"`
		Rollout      *spec.Plan     `json:"rollout,omitempty"`
		Webhooks     []spec.Webhook `json:"webhooks,omitempty"`
	}{e.StickyHeader, e.Override, e.Compare, e.Rollout, e.Webhooks})
	return string(b)
}

func cutPath(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// merge folds a declared endpoint into the stored one: the file's
// deployments and sticky header win; traffic and mirror stay as stored.
func (s *Service) merge(cur, want spec.Endpoint, prune bool, actor string, res *ApplyResult) (spec.Endpoint, []store.Event, error) {
	next := cur.Clone()
	var events []store.Event
	name := cur.Name
	for _, d := range want.Deployments {
		path := name + "/" + d.Name
		old, i, exists := next.Deployment(d.Name)
		switch {
		case !exists:
			next.Deployments = append(next.Deployments, d)
			events = append(events, event(name, EventDeploymentCreated, actor, fmt.Sprintf("deployment %s created", path), d))
			res.Created = append(res.Created, path)
		case !deploymentEqual(old, d):
			next.Deployments[i] = d
			events = append(events, event(name, EventDeploymentUpdated, actor, fmt.Sprintf("deployment %s updated", path), d))
			res.Updated = append(res.Updated, path)
		default:
			res.Unchanged = append(res.Unchanged, path)
		}
	}
	if prune {
		var errs []error
		for _, d := range cur.Deployments {
			if _, _, declared := want.Deployment(d.Name); declared {
				continue
			}
			if err := removable(next, d.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			next = withoutDeployment(next, d.Name)
			events = append(events, event(name, EventDeploymentRemoved, actor, fmt.Sprintf("deployment %s/%s removed (not in the applied file)", name, d.Name), map[string]string{"deployment": d.Name}))
			res.Removed = append(res.Removed, name+"/"+d.Name)
		}
		if err := errors.Join(errs...); err != nil {
			return spec.Endpoint{}, nil, err
		}
	}
	if settings := endpointSettings(want); settings != endpointSettings(next) {
		next.StickyHeader = want.StickyHeader
		next.Override = want.Override.Clone()
		next.Compare = want.Compare.Clone()
		next.Rollout = want.Clone().Rollout
		next.Webhooks = want.Clone().Webhooks
		events = append(events, event(name, EventEndpointUpdated, actor, fmt.Sprintf("endpoint %s settings updated (sticky header, override, compare, rollout plan or webhooks)", name), json.RawMessage(endpointSettings(want.Redacted()))))
		res.Updated = append(res.Updated, name)
	}
	if err := next.Validate(); err != nil {
		return spec.Endpoint{}, nil, err
	}
	return next, events, nil
}
