package spec

import (
	"fmt"
	"strings"
)

// The one place names given by hand are matched against the known ones:
// every "unknown endpoint" and "unknown deployment" message (the admin
// API, the config file, rollouts) ends with Known's hint.

// maxListed bounds the names a hint lists; more are counted.
const maxListed = 20

// Known is the hint after a name that is not among known: "did you
// mean ...?" when one known name is within Closest's distance, then the
// known names (at most maxListed, the rest counted). what names them
// ("deployments of endpoint \"fraud\"", "endpoints").
func Known(name string, known []string, what string) string {
	if len(known) == 0 {
		return "; there are no " + what
	}
	var b strings.Builder
	if c := Closest(name, known); c != "" {
		fmt.Fprintf(&b, "; did you mean %q?", c)
	}
	list := known
	if len(list) > maxListed {
		list = list[:maxListed]
	}
	fmt.Fprintf(&b, " (%s: %s", what, strings.Join(list, ", "))
	if n := len(known) - len(list); n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	b.WriteString(")")
	return b.String()
}

// Closest is the known name nearest to name by edit distance (insertions,
// deletions, substitutions and swaps of adjacent letters, case ignored),
// if it is within 2 edits and closer than half name's length; "" if none.
// Names longer than 64 bytes (no valid name is) match nothing.
func Closest(name string, known []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestD := "", 3
	for _, k := range known {
		if len(k) > 64 {
			continue
		}
		if d := Distance(strings.ToLower(name), strings.ToLower(k)); d < bestD && 2*d < len(name) {
			best, bestD = k, d
		}
	}
	return best
}

// Distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent bytes, each
// one edit.
func Distance(a, b string) int {
	// d[i][j]: distance between a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// unknownDeployment is the problem of a weight for a deployment e lacks.
func unknownDeployment(e Endpoint, name string) *Problem {
	return UnknownDeployment(name, e, name)
}

// UnknownDeployment is the problem at field of a deployment name e lacks,
// with Known's hint.
func UnknownDeployment(field string, e Endpoint, name string) *Problem {
	names := make([]string, len(e.Deployments))
	for i, d := range e.Deployments {
		names[i] = d.Name
	}
	return Problemf(field, "unknown deployment %q in endpoint %q%s", name, e.Name, Known(name, names, "its deployments"))
}
