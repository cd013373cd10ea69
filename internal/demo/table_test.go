package demo

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

var sampleReport = telemetry.Report{
	Endpoint: "fraud",
	Deployments: map[string]telemetry.DeploymentReport{
		"blue": {Requests: 1520, Errors: 7, ErrorRate: 7.0 / 1520, RPM: 11400, Share: 0.95,
			LatencyMS: telemetry.Quantiles{P99: 9.87}},
		"green": {Requests: 80, Errors: 1, ErrorRate: 1.0 / 80, RPM: 600, Share: 0.05,
			LatencyMS: telemetry.Quantiles{P99: 12.1}},
		"canary-long-name": {},
	},
}

func TestTableRenderPlain(t *testing.T) {
	var out bytes.Buffer
	tab := NewTable(&out)
	if tab.Redraw {
		t.Fatal("NewTable(*bytes.Buffer).Redraw = true, want false")
	}
	w := spec.Weights{"blue": 9500, "green": 500}
	if err := tab.Render("stage 1/4: green 5% (1s of 8s)", w, sampleReport); err != nil {
		t.Fatal(err)
	}
	if err := tab.Render("stage 1/4: green 5% (2s of 8s)", w, sampleReport); err != nil {
		t.Fatal(err)
	}
	block := func(title string) string {
		return title + "\n" +
			"  DEPLOYMENT         WEIGHT    SHARE       RPM   ERRORS   P99 MS\n" +
			"  blue                  95%    95.0%    11,400    0.46%      9.9\n" +
			"  canary-long-name        -        -         -        -        -\n" +
			"  green                  5%     5.0%       600    1.25%     12.1\n\n"
	}
	want := block("stage 1/4: green 5% (1s of 8s)") + block("stage 1/4: green 5% (2s of 8s)")
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("plain output mismatch (-want +got):\n%s", diff)
	}
}

func TestTableRenderRedraw(t *testing.T) {
	var out bytes.Buffer
	tab := &Table{out: &out, Redraw: true}
	w := spec.Weights{"blue": 9500, "green": 500}
	r := telemetry.Report{Deployments: map[string]telemetry.DeploymentReport{"blue": {}, "green": {}}}
	steps := []struct {
		keep bool
		want string
	}{
		// The first block is written as is: 1 title + 1 header + 2 rows.
		{false, "one\n"},
		// The second goes back over those 4 lines and clears them.
		{true, "\r\x1b[4A\x1b[Jtwo\n"},
		// After Keep the third starts below.
		{false, "three\n"},
	}
	for i, step := range steps {
		out.Reset()
		title := []string{"one", "two", "three"}[i]
		if err := tab.Render(title, w, r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), step.want) {
			t.Errorf("Render #%d wrote %q, want it to start with %q", i+1, out.String(), step.want)
		}
		if strings.HasSuffix(out.String(), "\n\n") {
			t.Errorf("Render #%d ends with a blank line; a redrawn block must not", i+1)
		}
		if step.keep {
			tab.Keep()
		}
	}
}

func TestWriteSummary(t *testing.T) {
	stages := []StageResult{
		{Title: "green 5%", Weights: spec.Weights{"blue": 9500, "green": 500}, Report: sampleReport},
		{Title: "green 100%", Weights: spec.Weights{"blue": 0, "green": spec.Full}, Report: telemetry.Report{
			Deployments: map[string]telemetry.DeploymentReport{
				"blue":  {},
				"green": {Requests: 12345, Errors: 185, ErrorRate: 185.0 / 12345, LatencyMS: telemetry.Quantiles{P99: 13.04}},
			},
		}},
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, stages, GenStats{Sent: 14000, OK: 13806, Failed: 193}); err != nil {
		t.Fatal(err)
	}
	want := "summary\n" +
		"  STAGE       DEPLOYMENT         WEIGHT  REQUESTS   ERRORS   P99 MS\n" +
		"  green 5%    blue                  95%     1,520    0.46%      9.9\n" +
		"              canary-long-name        -         0        -        -\n" +
		"              green                  5%        80    1.25%     12.1\n" +
		"  green 100%  blue                   0%         0        -        -\n" +
		"              green                100%    12,345    1.50%     13.0\n" +
		"generator: 14,000 sent, 13,806 ok, 193 failed (1.38%)\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("summary mismatch (-want +got):\n%s", diff)
	}
}

func TestThousands(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1,000"}, {12345, "12,345"}, {123456, "123,456"}, {1234567, "1,234,567"},
	}
	for _, tc := range tests {
		if got := thousands(tc.n); got != tc.want {
			t.Errorf("thousands(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
