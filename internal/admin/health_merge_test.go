package admin

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/api"
)

// TestMergeHealthNamesTheReplicasThatDisagree: a backend down on one
// replica is down in the fleet's answer, with that replica named and its
// error; a deployment is unhealthy where no backend of it is up; a
// gateway alone names no replica.
func TestMergeHealthNamesTheReplicasThatDisagree(t *testing.T) {
	view := func(aUp, bUp bool, aErr string) api.EndpointHealth {
		return api.EndpointHealth{Endpoint: "fraud", Deployments: []api.DeploymentHealth{
			{Name: "green", Healthy: aUp || bUp, Backends: []api.BackendHealth{
				{URL: "http://a", Healthy: aUp, LastError: aErr}, {URL: "http://b", Healthy: bUp}}},
			{Name: "blue", Healthy: true, Backends: []api.BackendHealth{{URL: "http://c", Healthy: true}}},
		}}
	}
	parts := []healthPart{
		{"gw-1", view(true, true, "reset, long ago")},
		{"gw-2", view(false, true, "dial tcp: connection refused")},
		{"gw-3", view(false, false, "timeout")},
	}
	want := api.EndpointHealth{Endpoint: "fraud", Deployments: []api.DeploymentHealth{
		{Name: "blue", Healthy: true, Backends: []api.BackendHealth{{URL: "http://c", Healthy: true}}},
		{Name: "green", Healthy: false, UnhealthyOn: []string{"gw-3"}, Backends: []api.BackendHealth{
			{URL: "http://a", Healthy: false, LastError: "dial tcp: connection refused", DownOn: []string{"gw-2", "gw-3"}},
			{URL: "http://b", Healthy: false, DownOn: []string{"gw-3"}}}},
	}}
	if diff := cmp.Diff(want, mergeHealth("fraud", parts, true)); diff != "" {
		t.Errorf("fleet's health (-want +got):\n%s", diff)
	}
	alone := mergeHealth("fraud", parts[1:2], false)
	if g := alone.Deployments[1]; g.UnhealthyOn != nil || g.Backends[0].DownOn != nil || !g.Healthy || g.Backends[0].Healthy {
		t.Errorf("a gateway alone's view = %+v, want its own, no replicas named", g)
	}
}
