package spec

import "testing"

func TestKnown(t *testing.T) {
	deps := []string{"blue", "green"}
	for _, tc := range []struct {
		name  string
		known []string
		want  string
	}{
		{"gren", deps, `; did you mean "green"? (deployments: blue, green)`},
		{"Blue", deps, `; did you mean "blue"? (deployments: blue, green)`},
		{"bleu", deps, `; did you mean "blue"? (deployments: blue, green)`},
		{"red", deps, ` (deployments: blue, green)`},
		{"ab", []string{"xy"}, ` (deployments: xy)`},
		{"x", nil, `; there are no deployments`},
	} {
		if got := Known(tc.name, tc.known, "deployments"); got != tc.want {
			t.Errorf("Known(%q, %v) = %q, want %q", tc.name, tc.known, got, tc.want)
		}
	}
	many := make([]string, 25)
	for i := range many {
		many[i] = string(rune('a'+i)) + "x"
	}
	if got, want := Known("zzzz", many, "endpoints"), " (endpoints: ax, bx, cx, dx, ex, fx, gx, hx, ix, jx, kx, lx, mx, nx, ox, px, qx, rx, sx, tx and 5 more)"; got != want {
		t.Errorf("Known(25 names) = %q, want %q", got, want)
	}
}

func TestUnknownDeployment(t *testing.T) {
	e := Endpoint{Name: "fraud", Deployments: []Deployment{{Name: "blue"}, {Name: "green"}}}
	if got, want := UnknownDeployment("canary", e, "grene").Error(), `canary: unknown deployment "grene" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green)`; got != want {
		t.Errorf("UnknownDeployment = %q, want %q", got, want)
	}
	// A weight for an unknown deployment is one problem: the sum it
	// knocks on is not another.
	err := ValidateTraffic(e, Weights{"blue": 9500, "gren": 500})
	if ps := Problems(err); len(ps) != 1 || ps[0].Error() != `gren: unknown deployment "gren" in endpoint "fraud"; did you mean "green"? (its deployments: blue, green)` {
		t.Errorf("ValidateTraffic = %v", ps)
	}
}
