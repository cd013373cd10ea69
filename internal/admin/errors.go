package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// statusError is an error the API itself raises with a fixed status:
// 401, 404 for an unknown path, 405, 413.
type statusError struct {
	status int
	msg    string
}

// Error returns the message answered to the client.
func (e *statusError) Error() string { return e.msg }

// writeError is the one place an error becomes a status and a body:
// API-raised statuses as they are; an oversized body 413; problems 400
// with every problem listed; store.ErrNotFound 404; store.ErrConflict 409;
// anything else 500, logged, with no detail leaked to the client.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		se        *statusError
		notLeader *rollout.NotLeaderError
		tooBig    *http.MaxBytesError
		problem   *spec.Problem
		status    int
		body      api.ErrorBody
	)
	switch {
	case errors.As(err, &se):
		status, body.Error = se.status, se.msg
	case errors.As(err, &notLeader):
		// Cluster mode: rollouts are started and acted on through the
		// fleet's leader; the CLI retries there (LeaderHeader).
		status, body.Error = http.StatusServiceUnavailable, err.Error()
		if notLeader.Leader != "" {
			w.Header().Set(api.LeaderHeader, notLeader.Leader)
		}
	case errors.As(err, &tooBig):
		status, body.Error = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)
	case errors.As(err, &problem):
		status = http.StatusBadRequest
		body.Problems = spec.Problems(err)
		body.Error = summary(body.Problems)
	case errors.Is(err, store.ErrTooLarge):
		status, body.Error = http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, store.ErrUnavailable):
		status, body.Error = http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, store.ErrNotFound):
		status, body.Error = http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrConflict):
		// The status says conflict: the word appended by wrapping
		// ("...: conflict") says nothing more.
		status, body.Error = http.StatusConflict, strings.TrimSuffix(err.Error(), ": "+store.ErrConflict.Error())
	default:
		s.log.Error("admin API call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		status, body.Error = http.StatusInternalServerError, "internal error"
	}
	writeJSON(w, status, body)
}

// summary is the one-line "error" of a 400 answer.
func summary(ps []spec.Problem) string {
	switch len(ps) {
	case 0:
		return "invalid request"
	case 1:
		return "invalid request: " + ps[0].Error()
	default:
		return fmt.Sprintf("invalid request: %d problems", len(ps))
	}
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (an unencodable type) gets here.
		http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
