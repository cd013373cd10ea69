package cli

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/modelgate/modelgate/internal/api"
)

// StartRollout starts a rollout on endpoint (POST .../rollouts): req names
// the canary, optionally the stable, and the plan fields that replace the
// endpoint's plan's.
func (c *Client) StartRollout(ctx context.Context, endpoint string, req api.StartRequest) (api.Rollout, error) {
	var r api.Rollout
	body, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	_, err = c.do(ctx, http.MethodPost, endpointPath(endpoint, "rollouts"), nil, body, "application/json", &r)
	return r, err
}

// Rollout returns the endpoint's running rollout, or its last one (GET
// .../rollout); an endpoint that never had one is api.ErrNotFound.
func (c *Client) Rollout(ctx context.Context, endpoint string) (api.Rollout, error) {
	var r api.Rollout
	err := c.getJSON(ctx, endpointPath(endpoint, "rollout"), nil, &r)
	return r, err
}

// RolloutAction applies a manual action to the endpoint's rollout (POST
// .../rollout/{action}) and returns the rollout after it; an action its
// phase does not allow is api.ErrConflict.
func (c *Client) RolloutAction(ctx context.Context, endpoint string, a api.Action) (api.Rollout, error) {
	var r api.Rollout
	_, err := c.do(ctx, http.MethodPost, endpointPath(endpoint, "rollout", string(a)), nil, nil, "", &r)
	return r, err
}

// Rollouts lists the endpoint's rollouts, newest first (GET .../rollouts).
func (c *Client) Rollouts(ctx context.Context, endpoint string) ([]api.Rollout, error) {
	var out struct {
		Rollouts []api.Rollout `json:"rollouts"`
	}
	err := c.getJSON(ctx, endpointPath(endpoint, "rollouts"), nil, &out)
	return out.Rollouts, err
}
