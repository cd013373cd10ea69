package api

import (
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// ApplyResult says what applying a config file changed. Every deployment
// the file lists appears once as "endpoint/deployment"; an endpoint appears
// by name only when it was created, removed (prune) or had its own
// settings (sticky header) updated.
type ApplyResult struct {
	Created   []string `json:"created"`
	Updated   []string `json:"updated"`
	Unchanged []string `json:"unchanged"`
	Removed   []string `json:"removed"`
}

// TokenInfo is the answer of GET /api/v1/token: what the presented token
// may do.
type TokenInfo struct {
	// Kind is "admin" (reads and writes) or "read-only" (reads only).
	Kind string `json:"kind"`
	// ValidUntil, set for a token replaced on SIGHUP that is still within
	// its overlap (admin.token_overlap), is when it stops being accepted.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
}

// ErrorBody is the JSON of every error answer:
// {"error": "summary", "problems": [{"field": "...", "message": "..."}]}.
// Problems are listed for 400 answers, every one found.
type ErrorBody struct {
	Error    string         `json:"error"`
	Problems []spec.Problem `json:"problems,omitempty"`
}

// Replica is one gateway of the fleet, as GET /api/v1/replicas lists it.
type Replica struct {
	// ID names the gateway: its hostname, process id and a random part.
	ID string `json:"id"`
	// AdminURL is where its admin API is reached (admin.advertise_url).
	AdminURL string `json:"admin_url"`
	// DataPlane is its data plane's listening address.
	DataPlane string `json:"data_plane"`
	// Version is the modelgate it runs.
	Version string `json:"version"`
	// StartedAt is when it started; LastSeen when it last wrote its
	// record (every few seconds while it runs).
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	// Leader is set on the gateway that leads the fleet's rollouts.
	Leader bool `json:"leader"`
	// Self is set on the gateway that answered.
	Self bool `json:"self"`
}

// ReplicaList is the answer of GET /api/v1/replicas.
type ReplicaList struct {
	Replicas []Replica `json:"replicas"`
}

// EndpointList is the answer of GET /api/v1/endpoints.
type EndpointList struct {
	Endpoints []spec.Endpoint `json:"endpoints"`
}

// BackendHealth is one backend's health as the data plane sees it
// (docs/api.md, GET /api/v1/endpoints/{ep}/health).
type BackendHealth struct {
	URL string `json:"url"`
	// Healthy is false while passive health took the backend out or its
	// last active health check failed; in a fleet's answer, while any
	// replica reporting sees it so (DownOn names them).
	Healthy bool `json:"healthy"`
	// Unchecked is set while an active health check has not yet given
	// its first verdict on the backend (it counts as up meanwhile).
	Unchecked bool `json:"unchecked,omitempty"`
	// LastError is the last transport or health check error, kept after
	// the backend recovered (in a fleet's answer, the first replica's in
	// DownOn, else any one's).
	LastError string `json:"last_error,omitempty"`
	// DownOn, in an answer covering more than one replica, lists the
	// replicas that see the backend down: each gateway judges the
	// backends it sends requests to on its own.
	DownOn []string `json:"down_on,omitempty"`
}

// DeploymentHealth is one deployment's part of the health answer.
type DeploymentHealth struct {
	Name string `json:"name"`
	// Healthy is true while at least one backend may take a request (on
	// every replica reporting, in a fleet's answer).
	Healthy bool `json:"healthy"`
	// UnhealthyOn, in an answer covering more than one replica, lists the
	// replicas on which no backend of the deployment may take a request:
	// they answer its requests 503.
	UnhealthyOn []string        `json:"unhealthy_on,omitempty"`
	Backends    []BackendHealth `json:"backends"`
}

// EndpointHealth is one gateway's view of an endpoint's backends: its part
// of a HealthAnswer.
type EndpointHealth struct {
	Endpoint    string             `json:"endpoint"`
	Deployments []DeploymentHealth `json:"deployments"`
}

// HealthAnswer is the answer of GET /api/v1/endpoints/{ep}/health: every
// replica's view merged (a backend down on any replica is down, and
// named), or ?replica=ID's alone, with the replicas it covers.
type HealthAnswer struct {
	EndpointHealth
	Replicas Coverage `json:"replicas"`
}
