package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/store"
)

// fakeSeries records what it was asked and answers an empty report.
type fakeSeries struct {
	endpoint     string
	window, step time.Duration
}

func (f *fakeSeries) SeriesGrid(window, step time.Duration) (control.SeriesGrid, error) {
	g := control.SeriesGrid{End: time.Unix(1_800_000_000, 0), Window: window, Step: step}
	return g, g.Validate()
}

func (f *fakeSeries) SeriesPart(ctx context.Context, endpoint string, g control.SeriesGrid) (control.SeriesPart, error) {
	if endpoint != "fraud" {
		return control.SeriesPart{}, fmt.Errorf("endpoint %q: %w", endpoint, store.ErrNotFound)
	}
	f.endpoint, f.window, f.step = endpoint, g.Window, g.Step
	return control.SeriesPart{}, nil
}

func (f *fakeSeries) SeriesReport(ctx context.Context, endpoint string, g control.SeriesGrid, parts []control.SeriesPart) (control.SeriesReport, error) {
	return control.SeriesReport{Endpoint: endpoint, Window: "1h", Step: "10s"}, nil
}

func TestSeriesRoute(t *testing.T) {
	tests := []struct {
		name         string
		query        string
		status       int
		window, step time.Duration
		fields       []string
	}{
		{"defaults", "", 200, time.Hour, 10 * time.Second, nil},
		{"window only", "?window=10m", 200, 10 * time.Minute, 2 * time.Second, nil},
		{"both", "?window=1h&step=1m", 200, time.Hour, time.Minute, nil},
		{"720 points", "?window=1h&step=5s", 200, time.Hour, 5 * time.Second, nil},
		{"unparsable", "?window=soon&step=often", 400, 0, 0, []string{"window", "step"}},
		{"out of range", "?window=2h&step=0s", 400, 0, 0, []string{"window", "step"}},
		{"too many points", "?window=1h&step=1s", 400, 0, 0, []string{"step"}},
		{"step over window", "?window=10s&step=1m", 400, 0, 0, []string{"step"}},
		{"fractional step", "?window=1m&step=1500ms", 400, 0, 0, []string{"step"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeSeries{}
			h := New(Options{Backend: newFake(), Series: fs, Token: testToken})
			rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints/fraud/series" + tc.query, ""})
			if rec.Code != tc.status {
				t.Fatalf("GET series%s = %d, want %d: %s", tc.query, rec.Code, tc.status, rec.Body)
			}
			if tc.status == 200 {
				if fs.window != tc.window || fs.step != tc.step {
					t.Errorf("Series(%s, %s), want (%s, %s)", fs.window, fs.step, tc.window, tc.step)
				}
				return
			}
			var body api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, p := range body.Problems {
				fields = append(fields, p.Field)
			}
			if diff := cmp.Diff(tc.fields, fields); diff != "" {
				t.Errorf("problem fields (-want +got):\n%s\n%s", diff, rec.Body)
			}
			if fs.endpoint != "" {
				t.Errorf("Series called on a 400")
			}
		})
	}

	h := New(Options{Backend: newFake(), Series: &fakeSeries{}, Token: testToken})
	if rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints/nope/series", ""}); rec.Code != 404 {
		t.Errorf("series of an unknown endpoint = %d, want 404", rec.Code)
	}
	if rec := do(t, h, "", call{"GET", "/api/v1/endpoints/fraud/series", ""}); rec.Code != 401 {
		t.Errorf("series without the token = %d, want 401", rec.Code)
	}
	without := New(Options{Backend: newFake(), Token: testToken})
	if rec := do(t, without, testToken, call{"GET", "/api/v1/endpoints/fraud/series", ""}); rec.Code != 404 {
		t.Errorf("series without a Series backend = %d, want 404", rec.Code)
	}
}

func TestDashboardIsServedWithoutData(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: testToken})
	for _, path := range []string{"/", "/app.js", "/style.css", "/chart.js"} {
		rec := do(t, h, "", call{"GET", path, ""})
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, rec.Code)
			continue
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy = %q", path, csp)
		}
		// The files are the same for everyone: no endpoint data, no token.
		if body := rec.Body.String(); strings.Contains(body, testToken) || strings.Contains(body, "fraud") {
			t.Errorf("GET %s serves data or the token", path)
		}
	}
	if rec := do(t, h, "", call{"POST", "/", ""}); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", rec.Code)
	}
	if rec := do(t, h, "", call{"GET", "/api/v1/endpoints", ""}); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/endpoints without token = %d, want 401 (the dashboard must not shadow the API)", rec.Code)
	}
}

// TestDashboardMakesNoExternalRequests reads every embedded file for
// addresses outside this origin and for the ways a token could leak into
// a URL.
func TestDashboardMakesNoExternalRequests(t *testing.T) {
	entries, err := web.ReadDir("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := web.ReadFile("web/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		// The SVG namespace is a name, not an address anything fetches.
		src := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		for _, bad := range []string{"http://", "https://", "//cdn", "new EventSource", "localStorage", "token=", "@import"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s contains %q", e.Name(), bad)
			}
		}
	}
}
