package config

import (
	"errors"
	"strings"

	"github.com/modelgate/modelgate/internal/spec"
)

// ParseAssignments reads command-line weights such as ["blue=95",
// "green=5"], "green=5.5%" or "blue=95,green=5" (an argument may hold
// several, separated by commas or spaces) into weights. Percents follow
// spec.ParsePercent. Every problem is reported at once, each naming the
// argument it is about; a deployment given twice is a problem. Whether the
// names exist and the weights sum to 100 is for the caller to check against
// the endpoint (traffic must sum to 100, mirror need not).
func ParseAssignments(args []string) (spec.Weights, error) {
	w := spec.Weights{}
	from := map[string]string{}
	var errs []error
	for _, arg := range args {
		for _, a := range strings.FieldsFunc(arg, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			name, value, ok := strings.Cut(a, "=")
			if !ok {
				errs = append(errs, spec.Problemf("", "%q: expected DEPLOYMENT=PERCENT, e.g. green=5", a))
				continue
			}
			if err := spec.ValidateName("", name); err != nil {
				msg := "deployment name is missing"
				if name != "" {
					msg = spec.Problems(err)[0].Message
				}
				errs = append(errs, spec.Problemf("", "%q: %s", a, msg))
				continue
			}
			p, err := spec.ParsePercent(value)
			if err != nil {
				errs = append(errs, spec.Problemf(name, "%q: invalid percent %q: %v", a, value, err))
				continue
			}
			if prev, dup := from[name]; dup {
				errs = append(errs, spec.Problemf(name, "%q: deployment %q is already given (%q)", a, name, prev))
				continue
			}
			from[name] = a
			w[name] = p
		}
	}
	if len(errs) == 0 && len(w) == 0 {
		errs = append(errs, spec.Problemf("", "expected at least one DEPLOYMENT=PERCENT, e.g. blue=95 green=5"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return w, nil
}
