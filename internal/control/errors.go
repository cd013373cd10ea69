package control

import (
	"fmt"
	"sort"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// sentinelError is a message that wraps a store sentinel (ErrConflict,
// ErrNotFound) for errors.Is without appending its word: the API answers
// the message as it is, and "...: conflict" says nothing the status does
// not.
type sentinelError struct {
	msg      string
	sentinel error
}

func (e *sentinelError) Error() string { return e.msg }

func (e *sentinelError) Unwrap() error { return e.sentinel }

// conflictf is a refusal that wraps store.ErrConflict without the word.
func conflictf(format string, args ...any) error {
	return &sentinelError{msg: fmt.Sprintf(format, args...), sentinel: store.ErrConflict}
}

// notFound is the error for an endpoint that does not exist, wrapping
// store.ErrNotFound, with "did you mean" and the endpoints there are.
func (s *Service) notFound(name string) error {
	sn := s.current.Load()
	names := make([]string, 0, len(sn.endpoints))
	for n := range sn.endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	return &sentinelError{msg: fmt.Sprintf("endpoint %q not found%s", name, spec.Known(name, names, "endpoints")), sentinel: store.ErrNotFound}
}

func depNames(e spec.Endpoint) []string {
	names := make([]string, len(e.Deployments))
	for i, d := range e.Deployments {
		names[i] = d.Name
	}
	return names
}
