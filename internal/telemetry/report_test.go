package telemetry

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/modelgate/modelgate/internal/api"
)

// summary builds a Summary with n latencies of lat (TTFB lat/2).
func summary(w time.Duration, status [numClasses]uint64, override uint64, lat time.Duration, inFlight int64) Summary {
	s := Summary{Window: w, Status: status, OverrideRequests: override, InFlight: inFlight}
	for _, n := range status {
		s.Requests += n
	}
	s.Errors, s.ClientErrors = status[5], status[4]
	s.Latency.Add(lat, s.Requests)
	s.TTFB.Add(lat/2, s.Requests)
	return s
}

// ms is the sketch's millisecond value for d (within 1% of d).
func ms(d time.Duration) float64 {
	return float64(bucketValue[bucketOf(d)]) / 1e6
}

func q4(d time.Duration) Quantiles {
	v := ms(d)
	return Quantiles{P50: v, P90: v, P95: v, P99: v}
}

func TestBuildReport(t *testing.T) {
	const w = 5 * time.Minute
	blue := summary(w, [numClasses]uint64{0, 0, 9448, 0, 40, 12}, 0, 10*time.Millisecond, 3)
	green := summary(w, [numClasses]uint64{0, 0, 489, 0, 2, 9}, 0, 12*time.Millisecond, 0)
	greenOverride := summary(w, [numClasses]uint64{0, 0, 500}, 100, 12*time.Millisecond, 0)
	fast := summary(w, [numClasses]uint64{0, 0, 100}, 0, 0, 0) // clamped to the 1µs floor
	empty := DeploymentReport{Status: map[string]uint64{}}

	blueRep := DeploymentReport{
		Requests: 9500, InFlight: 3, Status: map[string]uint64{"2xx": 9448, "4xx": 40, "5xx": 12},
		Errors: 12, ErrorRate: 12.0 / 9500, ClientErrors: 40, RPM: 1900, Share: 0.95,
		LatencyMS: q4(10 * time.Millisecond), TTFBMS: q4(5 * time.Millisecond),
	}
	greenRep := DeploymentReport{
		Requests: 500, Status: map[string]uint64{"2xx": 489, "4xx": 2, "5xx": 9},
		Errors: 9, ErrorRate: 9.0 / 500, ClientErrors: 2, RPM: 100, Share: 0.05,
		LatencyMS: q4(12 * time.Millisecond), TTFBMS: q4(6 * time.Millisecond),
	}
	latPct := (ms(12*time.Millisecond) - ms(10*time.Millisecond)) / ms(10*time.Millisecond) * 100

	tests := []struct {
		name     string
		baseline string
		order    []string
		sums     map[string]Summary
		want     Report
	}{
		{
			name:     "design example",
			baseline: "blue",
			order:    []string{"blue", "green"},
			sums:     map[string]Summary{"blue": blue, "green": green},
			want: Report{
				Endpoint: "fraud", Window: "5m", Baseline: "blue",
				Deployments: map[string]DeploymentReport{"blue": blueRep, "green": greenRep},
				Differences: map[string]DifferenceReport{"green": {
					ErrorRatePP:   ptr((9.0/500 - 12.0/9500) * 100),
					LatencyP50Pct: ptr(latPct),
					LatencyP99Pct: ptr(latPct),
					RPMPct:        ptr((100.0 - 1900) / 1900 * 100),
				}},
			},
		},
		{
			name:     "no data anywhere",
			baseline: "blue",
			order:    []string{"blue", "green"},
			sums:     map[string]Summary{},
			want: Report{
				Endpoint: "fraud", Window: "5m", Baseline: "blue",
				Deployments: map[string]DeploymentReport{"blue": empty, "green": empty},
				Differences: map[string]DifferenceReport{"green": {}},
			},
		},
		{
			name:     "canary without data",
			baseline: "blue",
			order:    []string{"blue", "green"},
			sums:     map[string]Summary{"blue": blue},
			want: Report{
				Endpoint: "fraud", Window: "5m", Baseline: "blue",
				Deployments: map[string]DeploymentReport{
					"blue":  func() DeploymentReport { r := blueRep; r.Share = 1; return r }(),
					"green": empty,
				},
				Differences: map[string]DifferenceReport{"green": {}},
			},
		},
		{
			name:     "override traffic counts but has no share; zero baseline latency",
			baseline: "fast",
			order:    []string{"fast", "green"},
			sums:     map[string]Summary{"fast": fast, "green": greenOverride},
			want: Report{
				Endpoint: "fraud", Window: "5m", Baseline: "fast",
				Deployments: map[string]DeploymentReport{
					"fast": {
						Requests: 100, Status: map[string]uint64{"2xx": 100}, RPM: 20, Share: 100.0 / 500,
						LatencyMS: q4(0), TTFBMS: q4(0),
					},
					"green": {
						Requests: 500, OverrideRequests: 100, Status: map[string]uint64{"2xx": 500}, RPM: 100,
						Share: 400.0 / 500, LatencyMS: q4(12 * time.Millisecond), TTFBMS: q4(6 * time.Millisecond),
					},
				},
				Differences: map[string]DifferenceReport{"green": {
					ErrorRatePP:   ptr(0), // not -0
					LatencyP50Pct: ptr((ms(12*time.Millisecond) - ms(0)) / ms(0) * 100),
					LatencyP99Pct: ptr((ms(12*time.Millisecond) - ms(0)) / ms(0) * 100),
					RPMPct:        ptr(400),
				}},
			},
		},
		{
			name:     "deployment outside order is reported; unknown baseline",
			baseline: "",
			order:    []string{"blue"},
			sums:     map[string]Summary{"blue": blue, "old": green},
			want: Report{
				Endpoint: "fraud", Window: "5m", Baseline: "",
				Deployments: map[string]DeploymentReport{"blue": blueRep, "old": greenRep},
				Differences: map[string]DifferenceReport{"blue": {}, "old": {}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := BuildReport("fraud", w, tc.baseline, tc.order, tc.sums)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("BuildReport mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReportJSON(t *testing.T) {
	rep := BuildReport("fraud", 10*time.Second, "blue", []string{"blue", "green"}, map[string]Summary{
		"blue": summary(10*time.Second, [numClasses]uint64{0, 0, 10}, 0, time.Millisecond, 0),
	})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"endpoint":"fraud","window":"10s","baseline":"blue","deployments":{` +
		`"blue":{"requests":10,"override_requests":0,"in_flight":0,"status":{"2xx":10},"errors":0,"error_rate":0,"client_errors":0,"rpm":60,"share":1,` +
		`"latency_ms":{"p50":0.998908,"p90":0.998908,"p95":0.998908,"p99":0.998908},"ttfb_ms":{"p50":0.504033,"p90":0.504033,"p95":0.504033,"p99":0.504033}},` +
		`"green":{"requests":0,"override_requests":0,"in_flight":0,"status":{},"errors":0,"error_rate":0,"client_errors":0,"rpm":0,"share":0,` +
		`"latency_ms":{"p50":0,"p90":0,"p95":0,"p99":0},"ttfb_ms":{"p50":0,"p90":0,"p95":0,"p99":0}}},` +
		`"differences":{"green":{"error_rate_pp":null,"latency_p50_pct":null,"latency_p99_pct":null,"rpm_pct":null}}}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("JSON mismatch (-want +got):\n%s", diff)
	}
}

func TestFormatWindow(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Minute, "5m"},
		{10 * time.Second, "10s"},
		{time.Hour, "1h"},
		{90 * time.Second, "90s"},
		{90 * time.Minute, "90m"},
		{2 * time.Hour, "2h"},
		{0, "0s"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tc := range tests {
		if got := api.FormatWindow(tc.in); got != tc.want {
			t.Errorf("api.FormatWindow(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
