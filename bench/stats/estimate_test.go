package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/estimate"
	"github.com/modelgate/modelgate/internal/spec"
)

// TestEstimateSuite checks the estimate suite's parts without running the harness
// (`go run ./bench/stats -suite estimate` does): the stable's minute it gives the
// estimator, the stage times it reads from the harness' runs, the comparison and
// its report.
func TestEstimateSuite(t *testing.T) {
	scs := estimateScenarios()
	if len(scs) != 4 || scs[0].rate != 200 || scs[1].rate != 2000 || scs[2].rate != 20 || scs[2].plan.ProgressDeadlineRequests == 0 || scs[3].rate != 2 || scs[1].id == scs[0].id {
		t.Fatalf("scenarios: %+v", scs)
	}
	tr := warmupTraffic(scs[0], 1, 0)
	if math.Abs(tr.RequestsPerSecond-200) > 10 || math.Abs(tr.ErrorRate-0.01) > 0.004 || tr.Stable.Latency.Count() < 10000 {
		t.Fatalf("R1's minute: %v requests/s, error rate %v, %d latencies", tr.RequestsPerSecond, tr.ErrorRate, tr.Stable.Latency.Count())
	}
	if again := warmupTraffic(scs[0], 1, 0); again.RequestsPerSecond != tr.RequestsPerSecond || again.Stable.SplitErrors != tr.Stable.SplitErrors {
		t.Errorf("the same minute drawn twice differs")
	}
	if judgedStages() != 3 {
		t.Fatalf("the default plan has %d judged stages, want 3", judgedStages())
	}

	// Three runs: promoted after stages of 100, 30 and 40 s; promoted after 200,
	// 30, 30 s; stalled in stage 2.
	runs := []rolloutOutcome{
		{StageSec: []int{0, 100, 130}, PromotedSec: 170, StalledSec: -1},
		{StageSec: []int{0, 200, 230}, PromotedSec: 260, StalledSec: -1},
		{StageSec: []int{0, 150}, PromotedSec: -1, StalledSec: 750, StallWeight: 25},
	}
	for i, want := range [][]float64{{100, 30, 40}, {200, 30, 30}, {150, -1, -1}} {
		for st, w := range want {
			got, ok := stageSeconds(runs[i], st, 3)
			if ok != (w >= 0) || ok && got != w {
				t.Errorf("run %d stage %d: %v, %v; want %v", i, st+1, got, ok, w)
			}
		}
	}
	e, err := estimate.Rollout(spec.Plan{}, tr, estimate.Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	rows := compareEstimates(rolloutResult{Scenario: scs[0], Runs: runs}, []estimate.Estimate{e})
	if len(rows) != 4 || rows[3].Stage != 0 {
		t.Fatalf("rows: %+v", rows)
	}
	s1, s2, total := rows[0], rows[1], rows[3]
	if s1.Median != 150 || s1.Decided != 3 || s2.Decided != 2 || math.Abs(s2.Stalled-1.0/3) > 1e-9 || total.Median != 260 || total.Decided != 2 {
		t.Errorf("stage 1 %+v, stage 2 %+v, total %+v", s1, s2, total)
	}
	if !s1.Compared || s1.Ratio != s1.Estimate/150 || s1.Within != within(s1.Ratio) || s1.Estimate != e.Stages[0].Time.Seconds {
		t.Errorf("stage 1's comparison: %+v", s1)
	}
	var buf bytes.Buffer
	reportEstimates(&buf, rows, 3, 1, estimateCost{})
	if !strings.Contains(buf.String(), "| R1 identical, 200 req/s | 1 (5%) | 3 of 3 | 150 (100–200) |") {
		t.Errorf("report:\n%s", buf.String())
	}
	for _, r := range rows {
		if _, err := json.Marshal(jsonSafeRow(r)); err != nil {
			t.Errorf("row %+v does not encode: %v", r, err)
		}
	}
}
