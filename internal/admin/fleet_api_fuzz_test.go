package admin

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// FuzzFleetParts feeds arbitrary answers of another replica's raw routes
// to their decoders: a part is accepted or refused with an error, never a
// panic; an accepted part merges and reports without one, and encodes to
// an answer the decoder accepts again.
func FuzzFleetParts(f *testing.F) {
	g := control.SeriesGrid{End: time.Unix(1_800_000_000, 0), Window: 3 * time.Second, Step: time.Second}
	seed := func(p any) []byte {
		b, err := json.Marshal(PartAnswer[any]{Replica: "r1", Part: p})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	sp := shadow.ShadowPart{Active: true, Mirrored: 3, Sent: 3, Matched: 2, Mismatched: 1, Protocol: "kserve_v1",
		Mismatches: []shadow.Mismatch{{Time: time.Unix(1_800_000_000, 0), RequestID: "a", Path: "predictions[0]", Reason: "1 vs 0", Live: "1", Shadow: "0"}},
		LastError:  &shadow.ErrorSample{Time: time.Unix(1_800_000_001, 0), Error: "reset"}}
	sp.ShadowLatency.Add(3*time.Millisecond, 3)
	sp.LiveLatency.Add(2*time.Millisecond, 3)
	f.Add(uint8(0), seed(bluePart(3, time.Millisecond)))
	f.Add(uint8(1), seed(control.SeriesPart{Deployments: map[string][]control.SeriesPoint{"blue": {{}, {Requests: 2, Split: 1, Errors: 1}, {}}}}))
	f.Add(uint8(2), seed(shadow.Part{Shadows: map[string]shadow.ShadowPart{"green": sp}}))
	f.Add(uint8(0), []byte(`{"replica":"r1","part":{"deployments":{"blue":{"requests":1,"status":[0,0,9],"latency":{"offset":5,"counts":[1]}}}}}`))
	f.Add(uint8(1), []byte(`{"replica":"r1","part":{"deployments":{"blue":[{"requests":1,"latency":{"offset":1158,"counts":[1,1]}}]}}}`))
	f.Add(uint8(3), seed(api.EndpointHealth{Endpoint: "fraud", Deployments: []api.DeploymentHealth{{Name: "blue", Backends: []api.BackendHealth{{URL: "http://a", Healthy: true}}}}}))
	f.Add(uint8(3), []byte(`{"replica":"r1","part":{"endpoint":"fraud","deployments":[{"name":"blue","backends":[{"url":"http://a"},{"url":"http://a"}]}]}}`))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var again []byte
		switch kind % 4 {
		case 0:
			p, err := DecodeMetricsPart(b, "r1")
			if err != nil {
				return
			}
			rep := telemetry.BuildReport("fraud", time.Minute, "blue", []string{"blue", "green"}, control.MergeMetrics([]control.MetricsPart{p, p}))
			if _, err := json.Marshal(rep); err != nil {
				t.Fatalf("report of an accepted part does not encode: %v", err)
			}
			again, _ = json.Marshal(PartAnswer[control.MetricsPart]{Replica: "r1", Part: p})
			if _, err := DecodeMetricsPart(again, "r1"); err != nil {
				t.Fatalf("an accepted part, encoded again, is refused: %v\n%s", err, again)
			}
		case 1:
			p, err := DecodeSeriesPart(b, "r1", g)
			if err != nil {
				return
			}
			for _, pts := range p.Deployments {
				var sum control.SeriesPoint
				for _, pt := range pts {
					sum.Latency.Merge(pt.Latency)
					_ = pt.Latency.Quantile(0.99)
				}
				_ = sum.Latency.Quantile(0.5)
			}
			again, _ = json.Marshal(PartAnswer[control.SeriesPart]{Replica: "r1", Part: p})
			if _, err := DecodeSeriesPart(again, "r1", g); err != nil {
				t.Fatalf("an accepted part, encoded again, is refused: %v\n%s", err, again)
			}
		case 3:
			h, err := DecodeHealthPart(b, "r1", "fraud")
			if err != nil {
				return
			}
			m := mergeHealth("fraud", []healthPart{{"r1", h}, {"r2", h}}, true)
			if len(m.Deployments) != len(h.Deployments) {
				t.Fatalf("merging a view with itself gives %d deployments, want %d", len(m.Deployments), len(h.Deployments))
			}
			again, _ = json.Marshal(PartAnswer[api.EndpointHealth]{Replica: "r1", Part: h})
			if _, err := DecodeHealthPart(again, "r1", "fraud"); err != nil {
				t.Fatalf("an accepted part, encoded again, is refused: %v\n%s", err, again)
			}
		case 2:
			p, err := DecodeShadowPart(b, "r1")
			if err != nil {
				return
			}
			rep := shadow.Merge(p, p).Report("fraud", time.Minute)
			if _, err := json.Marshal(rep); err != nil {
				t.Fatalf("report of an accepted part does not encode: %v", err)
			}
			again, _ = json.Marshal(PartAnswer[shadow.Part]{Replica: "r1", Part: p})
			if _, err := DecodeShadowPart(again, "r1"); err != nil {
				t.Fatalf("an accepted part, encoded again, is refused: %v\n%s", err, again)
			}
		}
	})
}

// FuzzFleetQueries sends arbitrary queries to the fleet-wide routes and to
// a replica's raw routes: every answer is a success or a client error,
// never a 500 or a panic.
func FuzzFleetQueries(f *testing.F) {
	for _, seed := range [][2]string{
		{"/api/v1/fleet/endpoints/fraud/series", "window=10s&step=1s&end=1800000005"},
		{"/api/v1/fleet/endpoints/fraud/metrics", "window=1m"},
		{"/api/v1/endpoints/fraud/series", "window=1m&step=5s&replica=me"},
		{"/api/v1/endpoints/fraud/metrics", "replica=other"},
	} {
		f.Add(seed[0], seed[1])
	}
	h := New(Options{Backend: newFake(), Series: &fakeSeries{}, Token: testToken, Replicas: &fixedReplicas{self: "me", list: []api.Replica{{ID: "me"}}},
		FleetReads: FleetReads{Self: "me"}})
	f.Fuzz(func(t *testing.T, path, query string) {
		switch path {
		case "/api/v1/fleet/endpoints/fraud/series", "/api/v1/fleet/endpoints/fraud/metrics", "/api/v1/endpoints/fraud/series", "/api/v1/endpoints/fraud/metrics":
		default:
			return
		}
		req := httptest.NewRequest("GET", path, nil)
		req.URL.RawQuery = query
		req.RequestURI = req.URL.RequestURI()
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %s?%s = %d: %s", path, query, rec.Code, rec.Body)
		}
	})
}
