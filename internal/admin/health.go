package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
)

// Health answers GET /api/v1/endpoints/{ep}/health.
type Health interface {
	// EndpointHealth is deployment → its backends' health; ok is false
	// when the data plane does not route the endpoint.
	EndpointHealth(endpoint string) (deps map[string][]api.BackendHealth, ok bool)
	// ApplyWarnings names each deployment of the endpoints with no
	// healthy backend, after waiting a bounded time for their first
	// health checks.
	ApplyWarnings(ctx context.Context, endpoints []string) []string
}

// warnUnhealthy adds a Warning header (299) to an apply's answer for each
// deployment of the applied endpoints with no healthy backend.
func (s *server) warnUnhealthy(w http.ResponseWriter, r *http.Request, res control.ApplyResult) {
	if s.health == nil {
		return
	}
	// The result names endpoints and endpoint/deployment pairs.
	var eps []string
	seen := map[string]bool{}
	for _, l := range [][]string{res.Created, res.Updated, res.Unchanged} {
		for _, name := range l {
			ep, _, _ := strings.Cut(name, "/")
			if !seen[ep] {
				seen[ep] = true
				eps = append(eps, ep)
			}
		}
	}
	for _, msg := range s.health.ApplyWarnings(r.Context(), eps) {
		w.Header().Add("Warning", `299 modelgate "`+strings.ReplaceAll(msg, `"`, "'")+`"`)
	}
}

// getHealth serves GET /api/v1/endpoints/{ep}/health?replica=: every
// replica's view of the endpoint's backends, merged (fleet_api.go), or
// one replica's.
func (s *server) getHealth(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ep")
	if _, err := s.backend.Endpoint(r.Context(), name); err != nil {
		s.writeError(w, r, err)
		return
	}
	parts, cov, err := gather(s, w, r, fleetRead[healthPart]{
		kind: "health",
		local: func(ctx context.Context) (healthPart, error) {
			return healthPart{replica: s.selfID(ctx), health: s.localHealth(name)}, nil
		},
		decode: func(b []byte, id string) (healthPart, error) {
			h, err := DecodeHealthPart(b, id, name)
			return healthPart{replica: id, health: h}, err
		},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.HealthAnswer{EndpointHealth: mergeHealth(name, parts, cov.Of > 1), Replicas: cov})
}

// healthPart serves GET /api/v1/fleet/endpoints/{ep}/health: this
// gateway's own view, for the replica building a fleet's answer.
func (s *server) healthPart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ep")
	if _, err := s.backend.Endpoint(r.Context(), name); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PartAnswer[api.EndpointHealth]{Replica: s.selfID(r.Context()), Part: s.localHealth(name)})
}

// localHealth is this gateway's data plane's view of the endpoint, its
// deployments by name.
func (s *server) localHealth(name string) api.EndpointHealth {
	deps, _ := s.health.EndpointHealth(name)
	out := api.EndpointHealth{Endpoint: name, Deployments: []api.DeploymentHealth{}}
	for dep, hs := range deps {
		d := api.DeploymentHealth{Name: dep, Backends: hs}
		for _, h := range hs {
			d.Healthy = d.Healthy || h.Healthy
		}
		out.Deployments = append(out.Deployments, d)
	}
	sort.Slice(out.Deployments, func(i, j int) bool { return out.Deployments[i].Name < out.Deployments[j].Name })
	return out
}

// healthPart is one replica's view, named.
type healthPart struct {
	replica string
	health  api.EndpointHealth
}

// DecodeHealthPart reads a replica's view of endpoint's backends.
func DecodeHealthPart(b []byte, id, endpoint string) (api.EndpointHealth, error) {
	return decodePart(b, id, func(h api.EndpointHealth) error { return checkHealthPart(h, endpoint) })
}

// checkHealthPart refuses another replica's view that is not of the
// endpoint asked, or names a deployment or backend twice or not at all.
func checkHealthPart(h api.EndpointHealth, endpoint string) error {
	if h.Endpoint != endpoint {
		return fmt.Errorf("health of %q, not of %q", h.Endpoint, endpoint)
	}
	deps := map[string]bool{}
	for _, d := range h.Deployments {
		if d.Name == "" || deps[d.Name] {
			return fmt.Errorf("deployment %q unnamed or listed twice", d.Name)
		}
		deps[d.Name] = true
		urls := map[string]bool{}
		for _, b := range d.Backends {
			if b.URL == "" || urls[b.URL] {
				return fmt.Errorf("a backend of %q unnamed or listed twice", d.Name)
			}
			urls[b.URL] = true
		}
	}
	return nil
}

// mergeHealth merges the replicas' views: a backend is healthy while every
// replica that routes to it sees it so, a deployment while every replica
// has a backend of it up. In a fleet's answer (named) the replicas that
// disagree are listed.
func mergeHealth(endpoint string, parts []healthPart, named bool) api.EndpointHealth {
	out := api.EndpointHealth{Endpoint: endpoint, Deployments: []api.DeploymentHealth{}}
	index := map[string]int{}
	for _, p := range parts {
		for _, pd := range p.health.Deployments {
			i, ok := index[pd.Name]
			if !ok {
				i = len(out.Deployments)
				index[pd.Name] = i
				out.Deployments = append(out.Deployments, api.DeploymentHealth{Name: pd.Name, Healthy: true, Backends: []api.BackendHealth{}})
			}
			d := &out.Deployments[i]
			if !pd.Healthy {
				d.Healthy = false
				if named {
					d.UnhealthyOn = append(d.UnhealthyOn, p.replica)
				}
			}
			for _, pb := range pd.Backends {
				j := slices.IndexFunc(d.Backends, func(b api.BackendHealth) bool { return b.URL == pb.URL })
				if j < 0 {
					j = len(d.Backends)
					d.Backends = append(d.Backends, api.BackendHealth{URL: pb.URL, Healthy: true})
				}
				b := &d.Backends[j]
				b.Unchecked = b.Unchecked || pb.Unchecked
				if b.LastError == "" || (!pb.Healthy && b.Healthy) {
					b.LastError = pb.LastError // the first replica that sees it down says why
				}
				if !pb.Healthy {
					b.Healthy = false
					if named {
						b.DownOn = append(b.DownOn, p.replica)
					}
				}
			}
		}
	}
	sort.Slice(out.Deployments, func(i, j int) bool { return out.Deployments[i].Name < out.Deployments[j].Name })
	return out
}
