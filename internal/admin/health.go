package admin

import (
	"context"
	"net/http"
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

func (s *server) getHealth(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ep")
	if _, err := s.backend.Endpoint(r.Context(), name); err != nil {
		s.writeError(w, r, err)
		return
	}
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
	writeJSON(w, http.StatusOK, out)
}
