package spec

import (
	"errors"
	"fmt"
)

// Problem is one thing wrong with user input, at a field path such as
// "endpoints[0].traffic.green". Validation returns every problem found,
// joined with errors.Join; Problems recovers them for an API answer.
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// Problemf builds a *Problem at field.
func Problemf(field, format string, args ...any) *Problem {
	return &Problem{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Problems flattens err (built by errors.Join, possibly nested) into its
// problems. An error that is not a *Problem becomes one without a field.
func Problems(err error) []Problem {
	if err == nil {
		return nil
	}
	var out []Problem
	var walk func(error)
	walk = func(e error) {
		if multi, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range multi.Unwrap() {
				walk(inner)
			}
			return
		}
		var p *Problem
		if errors.As(e, &p) {
			out = append(out, *p)
			return
		}
		out = append(out, Problem{Message: e.Error()})
	}
	walk(err)
	return out
}

// Prefix puts parent in front of every problem's field path, so that a
// check written for one deployment reports "endpoints[2].deployments[0].timeout".
func Prefix(parent string, err error) error {
	if err == nil {
		return nil
	}
	ps := Problems(err)
	errs := make([]error, len(ps))
	for i, p := range ps {
		field := parent
		switch {
		case p.Field == "":
		case parent == "":
			field = p.Field
		case p.Field[0] == '[':
			field = parent + p.Field
		default:
			field = parent + "." + p.Field
		}
		errs[i] = &Problem{Field: field, Message: p.Message}
	}
	return errors.Join(errs...)
}
