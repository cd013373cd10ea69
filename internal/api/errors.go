package api

import "errors"

// ErrNotFound and ErrConflict are what the API's 404 and 409 answers mean:
// the CLI's errors match them with errors.Is, and the server's packages
// (internal/store) return them for a missing key and a refused change.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)
