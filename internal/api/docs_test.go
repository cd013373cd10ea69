package api

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
)

// docRoute is what docs/api.md's examples of one call are checked
// against: the body's type (nil: the call takes none, or YAML), the
// answer's, and the field the server puts in front of a body's problems.
type docRoute struct {
	method  string
	pattern *regexp.Regexp
	body    func() any
	answer  func() any
	prefix  string
}

var docRoutes = []docRoute{
	{"GET", regexp.MustCompile(`^/api/v1/endpoints$`), nil, func() any { return new(EndpointList) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+$`), nil, func() any { return new(spec.Endpoint) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/health$`), nil, func() any { return new(HealthAnswer) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/(traffic|mirror)$`), nil, func() any { return new(spec.Weights) }, ""},
	{"PUT", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/traffic$`), func() any { return new(spec.Weights) }, func() any { return new(spec.Weights) }, "traffic"},
	{"PUT", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/mirror$`), func() any { return new(spec.Weights) }, func() any { return new(spec.Weights) }, "mirror"},
	{"PUT", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/deployments/[^/]+$`), func() any { return new(spec.Deployment) }, func() any { return new(spec.Endpoint) }, ""},
	{"DELETE", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/deployments/[^/]+$`), nil, func() any { return new(spec.Endpoint) }, ""},
	{"POST", regexp.MustCompile(`^/api/v1/apply$`), nil, func() any { return new(ApplyResult) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/metrics$`), nil, func() any { return new(MetricsAnswer) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/series$`), nil, func() any { return new(SeriesAnswer) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/shadow$`), nil, func() any { return new(ShadowAnswer) }, ""},
	{"POST", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/rollouts$`), func() any { return new(StartRequest) }, func() any { return new(RolloutAnswer) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/rollout$`), nil, func() any { return new(RolloutAnswer) }, ""},
	{"POST", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/rollout/[^/]+$`), nil, func() any { return new(RolloutAnswer) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/endpoints/[^/]+/rollouts$`), nil, func() any { return new(RolloutList) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/events$`), nil, func() any { return new(EventList) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/events/stream$`), nil, func() any { return new(Event) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/replicas$`), nil, func() any { return new(ReplicaList) }, ""},
	{"GET", regexp.MustCompile(`^/api/v1/token$`), nil, func() any { return new(TokenInfo) }, ""},
}

// docExample is one curl call of docs/api.md and the JSON it answered.
type docExample struct {
	line         int
	method, path string
	body         string
	answers      []string // one JSON value each; SSE data lines each one
}

var (
	curlRE   = regexp.MustCompile(`^\$ curl (.*)$`)
	methodRE = regexp.MustCompile(`-X (\w+)`)
	urlRE    = regexp.MustCompile(`'?(?:https?://)?localhost:\d+(/[^ '?]*)`)
	bodyRE   = regexp.MustCompile(`-d '([^']*)'`)
)

// docExamples reads every curl example of the page: the call, then the
// answer's JSON lines up to the next call, blank line or fence.
func docExamples(t *testing.T, page string) []docExample {
	var out []docExample
	lines := strings.Split(page, "\n")
	for i := 0; i < len(lines); i++ {
		m := curlRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		cmd := m[1]
		start := i + 1
		for strings.HasSuffix(strings.TrimSpace(cmd), `\`) && i+1 < len(lines) { // continued lines
			i++
			cmd = strings.TrimSuffix(strings.TrimSpace(cmd), `\`) + " " + strings.TrimSpace(lines[i])
		}
		ex := docExample{line: start, method: "GET"}
		if mm := methodRE.FindStringSubmatch(cmd); mm != nil {
			ex.method = mm[1]
		} else if strings.Contains(cmd, " -d ") || strings.Contains(cmd, "--data-binary") {
			ex.method = "POST"
		}
		u := urlRE.FindStringSubmatch(cmd)
		if u == nil {
			t.Fatalf("docs/api.md:%d: no URL in %q", start, cmd)
		}
		ex.path = u[1]
		if b := bodyRE.FindStringSubmatch(cmd); b != nil {
			ex.body = b[1]
		}
		var cur []string
		flush := func() {
			if len(cur) > 0 {
				ex.answers = append(ex.answers, strings.Join(cur, "\n"))
				cur = nil
			}
		}
		for i+1 < len(lines) {
			l := lines[i+1]
			if strings.HasPrefix(l, "$ ") || strings.HasPrefix(l, "```") {
				break
			}
			i++
			switch {
			case strings.HasPrefix(l, "data: "):
				flush()
				cur = []string{strings.TrimPrefix(l, "data: ")}
				flush()
			case strings.HasPrefix(l, "{") || (len(cur) > 0 && strings.HasPrefix(l, " ")):
				cur = append(cur, l)
			default:
				flush()
			}
		}
		flush()
		out = append(out, ex)
	}
	return out
}

// TestDocsExamplesMatchTheContract: every curl example of docs/api.md
// whose answer is whole (not shortened with "...") decodes strictly into
// the call's answer type (or the error body), so the page names no field
// the API lacks; every body decodes into the call's body type, or, when
// the page shows it refused for what it is, with the problems shown.
func TestDocsExamplesMatchTheContract(t *testing.T) {
	page, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := docExamples(t, string(page))
	var answers, bodies int
	for _, ex := range examples {
		var route *docRoute
		for i := range docRoutes {
			if docRoutes[i].method == ex.method && docRoutes[i].pattern.MatchString(ex.path) {
				route = &docRoutes[i]
			}
		}
		if route == nil {
			if len(ex.answers) == 1 && strings.Contains(ex.answers[0], " not allowed on ") {
				continue // a call with the wrong method, shown for its 405
			}
			if !strings.HasPrefix(ex.path, "/api/v1/state/") && !strings.HasPrefix(ex.path, "/metrics") && !strings.HasPrefix(ex.path, "/healthz") && !strings.HasPrefix(ex.path, "/readyz") {
				t.Errorf("docs/api.md:%d: %s %s is no call of the API", ex.line, ex.method, ex.path)
			}
			continue
		}
		var shownProblems []string
		for _, a := range ex.answers {
			if strings.Contains(a, "...") {
				continue // shortened on the page
			}
			answers++
			if strings.HasPrefix(a, `{"error"`) {
				var eb ErrorBody
				if err := DecodeJSON([]byte(a), &eb); err != nil {
					t.Errorf("docs/api.md:%d: the error answer is not the API's error body: %v", ex.line, err)
				}
				for _, p := range eb.Problems {
					shownProblems = append(shownProblems, p.Error())
				}
				continue
			}
			if err := DecodeJSON([]byte(a), route.answer()); err != nil {
				t.Errorf("docs/api.md:%d: %s %s answers what its type does not hold:\n%s\n%v", ex.line, ex.method, ex.path, a, err)
			}
		}
		if ex.body == "" || route.body == nil {
			continue
		}
		bodies++
		err := DecodeJSON([]byte(ex.body), route.body())
		if err == nil {
			continue // accepted as JSON; any refusal shown is the server's (an unknown deployment, a sum)
		}
		var got []string
		for _, p := range spec.Problems(spec.Prefix(route.prefix, err)) {
			got = append(got, p.Error())
		}
		if diff := cmp.Diff(shownProblems, got); diff != "" {
			t.Errorf("docs/api.md:%d: the body %s is refused with other problems than the page shows (-page +DecodeJSON):\n%s", ex.line, ex.body, diff)
		}
	}
	// The page has about 25 examples; a parser that finds none checks nothing.
	if len(examples) < 20 || answers < 12 || bodies < 8 {
		t.Errorf("checked %d examples, %d answers, %d bodies: docs/api.md's examples are not being found", len(examples), answers, bodies)
	}
	t.Logf("checked %d examples, %d answers, %d bodies", len(examples), answers, bodies)
}
