package rollout

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// TestEstimateTakesTheRateOfTrafficThatJustStarted: traffic that began a
// few seconds before the start is estimated at its rate from then on, not
// at the minute's average (which would be several times too slow and warn
// of deadlines for nothing); steady traffic keeps the minute's rate.
func TestEstimateTakesTheRateOfTrafficThatJustStarted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		seconds  int // blue served 100 requests/s for the last seconds
		wantRate float64
		wantNote bool
	}{
		{"started 5 s ago", 5, 50, true}, // 500 requests in the last 10 s
		{"steady for a minute", 60, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newControllerOver(t, func(b *bolt.Store) store.Store { return b }, nil)
			now := c.now()
			rc := c.opts.Telemetry.Recorder("fraud", "blue")
			for s := tc.seconds; s >= 1; s-- {
				at := now.Add(-time.Duration(s) * time.Second).Add(500 * time.Millisecond)
				for range 100 {
					rc.Begin()
					rc.Observe(telemetry.Observation{Now: at.UnixNano(), Status: 200, Latency: 5 * time.Millisecond, TTFB: time.Millisecond})
				}
			}
			plan := spec.Plan{Stages: []spec.Stage{{Weight: 1000}, {Weight: spec.Full}}}
			r, err := c.Start(t.Context(), "fraud", StartRequest{Canary: "green", Plan: plan})
			if err != nil {
				t.Fatal(err)
			}
			if r.Estimate == nil {
				t.Fatal("no estimate")
			}
			if got := r.Estimate.RequestsPerSecond; math.Abs(got-tc.wantRate) > 0.1*tc.wantRate {
				t.Errorf("estimated at %.1f requests/s, want %.0f", got, tc.wantRate)
			}
			noted := slices.ContainsFunc(r.Estimate.Notes, func(n string) bool { return strings.Contains(n, "traffic rose within the last minute") })
			if noted != tc.wantNote {
				t.Errorf("notes %q: the rise noted = %t, want %t", r.Estimate.Notes, noted, tc.wantNote)
			}
		})
	}
}
